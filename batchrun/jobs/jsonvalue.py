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


def deep_path(value: Any, limit: int) -> list[str | int] | None:
    """The keys down to where ``value`` nests objects and lists more than ``limit`` deep; None
    when it never does. Walked without recursion, so no depth can overflow Python's stack."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if len(path) >= limit:
            return path
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        stack.extend((child, [*path, key]) for key, child in pairs)
    return None


def dotted(path: list[str | int]) -> str:
    """A field path as error messages write it: ``params.messages[0].content``."""
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")
