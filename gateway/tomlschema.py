"""msgspec's validation errors in the words our TOML files use (config and mapping rules).

msgspec says "Object contains unknown field `colour` - at `$.rule[0]`"; a user editing a file
wants the dotted key first and then what is wrong with it: ``rule[0].colour``, "unknown key".
"""

from __future__ import annotations

import msgspec

UNKNOWN_KEY = "unknown key"
MISSING_KEY = "required key missing"


def split_validation_error(err: msgspec.ValidationError) -> tuple[str, str]:
    """(dotted key, or "" for the top level; what is wrong, starting lower-case)."""
    message = str(err)
    key = ""
    if " - at `$" in message:
        message, _, where = message.rpartition(" - at `$")
        key = where.rstrip("`").lstrip(".")
    for prefix, meaning in (
        ("Object contains unknown field", UNKNOWN_KEY),
        ("Object missing required field", MISSING_KEY),
    ):
        if message.startswith(prefix):
            field = message.split("`")[1]
            key = f"{key}.{field}" if key else field
            message = meaning
    return key, message[:1].lower() + message[1:]
