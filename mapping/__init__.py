"""Pure mapping between vendor records and the canonical ticket. No I/O, no clock."""

from mapping.convert import (
    StatusContext,
    UnmappedValue,
    VendorWrite,
    as_record,
    browse_url,
    canonical_value,
    journal_field,
    matching_routes,
    read_path,
    stored_as_written,
    to_canonical,
    to_vendor,
)
from mapping.errors import ConfigError, ConfigInvalid
from mapping.spec import Mapping, Route, load_mapping

__all__ = [
    "ConfigError",
    "ConfigInvalid",
    "Mapping",
    "Route",
    "StatusContext",
    "UnmappedValue",
    "VendorWrite",
    "as_record",
    "browse_url",
    "canonical_value",
    "journal_field",
    "load_mapping",
    "matching_routes",
    "read_path",
    "stored_as_written",
    "to_canonical",
    "to_vendor",
]
