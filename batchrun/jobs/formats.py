"""The two line formats, mixable within one file, read into a custom_id and Messages params.

* Anthropic's Message Batches line: ``{"custom_id": "q1", "params": {...Messages params...}}``
* shorthand: ``{"id": "q1", "model": "MiniMax-M3", "prompt": "Hello", "max_tokens": 256}``,
  where every other Messages parameter sits at the top level and ``prompt`` becomes one user
  message (or ``messages`` is given instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from batchrun.jobs.errors import HINT, Invalid, did_you_mean
from batchrun.jobs.expect import ExpectationError, parse_expectation
from batchrun.jobs.jsonvalue import deep_path, dotted
from batchrun.jobs.jsonvalue import describe as _got

KNOWN_PARAMS = (
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "cache_control",
    "output_config",
    "inference_geo",
)
_KNOWN_PARAMS = frozenset(KNOWN_PARAMS)
_BATCH_KEYS = ("custom_id", "params", "expect")
_SHORTHAND_KEYS = ("custom_id", "id", "prompt", "expect")
_SHORTHAND_ALLOWED = frozenset(_SHORTHAND_KEYS) | _KNOWN_PARAMS
_MAX_ID_CHARS = 256


# How deep a line may nest objects and lists: orjson writes at most 255 levels, and the checks
# and jsonschema walk values by recursion. Real requests stay far below.
MAX_LINE_DEPTH = 128


def decode(line: bytes) -> dict[str, Any]:
    """The line's JSON object."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _syntax_error(line, exc) from None
    if not isinstance(value, dict):
        raise Invalid(None, f"the line is {_got(value)}, not a JSON object; {HINT}")
    too_deep = deep_path(value, MAX_LINE_DEPTH)
    if too_deep is not None:
        raise Invalid(
            dotted(too_deep[:2]),
            f"nested more than {MAX_LINE_DEPTH} levels deep (objects and lists inside each "
            "other); no request needs that many",
        )
    return value


def read_custom_id(obj: dict[str, Any]) -> tuple[str, str]:
    """The line's custom_id and the key it was given under ("custom_id" or "id")."""
    batch = "params" in obj
    if "custom_id" in obj and "id" in obj and not batch:
        raise Invalid("id", 'give either "custom_id" or "id", not both')
    field = "id" if "id" in obj and not batch else "custom_id"
    value = obj.get(field)
    if value is None:
        raise Invalid(
            "custom_id",
            'no custom_id: every line needs a unique "custom_id" ("id" also works in the '
            "shorthand format)",
        )
    _check_id(field, value)
    return value, field


def read_expect(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The line's expectation, validated (batchrun.jobs.expect), in its canonical JSON."""
    if "expect" not in obj:
        return None
    try:
        return parse_expectation(obj["expect"]).to_json()
    except ExpectationError as exc:
        raise Invalid(exc.field, exc.message) from None


def line_params(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The line's Messages params, and the prefix of their fields ("params." or "")."""
    if "params" in obj:
        return _batch_params(obj), "params."
    return _shorthand_params(obj), ""


def _syntax_error(line: bytes, exc: orjson.JSONDecodeError) -> Invalid:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Invalid(
            None,
            f"the line is not UTF-8 text (byte 0x{line[bad.start]:02x} at byte {bad.start + 1}); "
            "save the file as UTF-8",
        )
    message = f"invalid JSON at column {exc.colno}: {exc.msg}"
    if not line.endswith(b"\n"):
        message += " (the last line has no newline: was the file cut short?)"
    return Invalid(None, message)


def _check_id(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise Invalid(field, f"{field} must be a non-empty string, got {_got(value)}")
    if len(value) > _MAX_ID_CHARS:
        raise Invalid(
            field, f"{field} must be at most {_MAX_ID_CHARS} characters, got {len(value)}"
        )


def _batch_params(obj: dict[str, Any]) -> dict[str, Any]:
    for key in obj:
        if key not in _BATCH_KEYS:
            raise Invalid(
                key,
                f"unknown field {key!r} in a batch line{did_you_mean(key, _BATCH_KEYS)}; "
                'a batch line has "custom_id", "params" and optionally "expect", '
                'with every Messages parameter inside "params"',
            )
    params = obj["params"]
    if not isinstance(params, dict):
        raise Invalid(
            "params", f"params must be an object of Messages parameters, got {_got(params)}"
        )
    _check_names(params, _KNOWN_PARAMS, KNOWN_PARAMS, "params.")
    return params


def _shorthand_params(obj: dict[str, Any]) -> dict[str, Any]:
    _check_names(obj, _SHORTHAND_ALLOWED, (*_SHORTHAND_KEYS, *KNOWN_PARAMS), "")
    params = {key: value for key, value in obj.items() if key not in _SHORTHAND_KEYS}
    prompt = obj.get("prompt")
    if "prompt" in obj and "messages" in obj:
        raise Invalid("prompt", 'give either "prompt" or "messages", not both')
    if "messages" in obj:
        return params
    if prompt is None:
        raise Invalid("prompt", 'no prompt: give "prompt" (a string) or "messages"')
    if not isinstance(prompt, str) or not prompt.strip():
        raise Invalid("prompt", f"prompt must be a non-empty string, got {_got(prompt)}")
    params["messages"] = [{"role": "user", "content": prompt}]
    return params


def _check_names(
    obj: dict[str, Any], allowed: frozenset[str], known: Sequence[str], prefix: str
) -> None:
    for key in obj:
        if key not in allowed:
            raise Invalid(
                f"{prefix}{key}",
                f"unknown parameter {key!r}{did_you_mean(key, known)}; "
                f"known Messages parameters: {', '.join(KNOWN_PARAMS)}",
            )
