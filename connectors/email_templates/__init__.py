"""Packaged default email templates (Jinja2); an admin folder named in config overrides them."""
