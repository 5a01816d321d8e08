"""How error messages describe a JSON value a user wrote: short, and typed."""

from __future__ import annotations

from typing import Any

import orjson


def describe(value: Any) -> str:
    """A short description of a JSON value for an error message: ``"abc" (a string)``, ``3``."""
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{orjson.dumps(shown).decode()} (a string)"
    return "a list" if isinstance(value, list) else "an object"
