"""Make customer text inert before it becomes a ticket comment.

Three things in a mail could act on the product or on the ticket systems if they were copied as
they are:

- Commands. The policy engine reads a command as a slash and a word at the start of the text or
  after white space (`/escalate`, `/approve-escalation`, and any word an admin adds). A customer
  can never give one, so every such slash is replaced by U+2215 DIVISION SLASH: a reader still
  reads "approve-escalation" behind a slash-like sign, the engine sees no command, whatever words
  the policy knows today or later. A slash inside a word or a path ("and/or", "/var/log") is left
  alone except at the start.
- Origin markers. Mirrored comments carry `[escalation-sync origin=...]`; a customer who typed
  one could make the sync take their comment for a copy. The bracket is turned into a parenthesis.
- Markup. ServiceNow renders `[code]...[/code]` in journal fields as HTML, and both systems would
  show tag-like text raw at best. Every `<` that opens something tag-like (`<script`, `</`, `<!`,
  `<?`) becomes U+2039 (a single angle quotation mark), and `[code]` becomes `(code)`, so
  nothing can be read back as markup.
"""

from __future__ import annotations

import re

# Same notion of "start of a command" as the policy engine: the start of the text or after any
# white space (Python's \s, so a no-break space or an em space counts too).
_COMMAND = re.compile(r"(?:^|(?<=\s))/(?=\w)")
_MARKER = re.compile(r"\[(\s*escalation-sync)", re.IGNORECASE)
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)

DIVISION_SLASH = "\u2215"
SINGLE_ANGLE = "\u2039"


def defang_commands(text: str) -> str:
    """Every `/word` a command parser could read starts with a division slash (still readable)."""
    return _COMMAND.sub(DIVISION_SLASH, text)


def neutralise_markup(text: str) -> str:
    """Tag-like `<` become U+2039, `[code]` becomes `(code)`, origin markers lose their bracket."""
    text = _TAG_OPEN.sub(SINGLE_ANGLE, text)
    text = _CODE_TAG.sub(r"(\1)", text)
    return _MARKER.sub(r"(\1", text)


def defang(text: str) -> str:
    """Both: the text a customer wrote, safe to post as a comment."""
    return defang_commands(neutralise_markup(text))


__all__ = ["DIVISION_SLASH", "SINGLE_ANGLE", "defang", "defang_commands", "neutralise_markup"]
