"""The rules of ``messages``: roles, content, and the fields each content block needs."""

from __future__ import annotations

from typing import Any

from batchrun.jobs.errors import Invalid
from batchrun.jobs.jsonvalue import describe as _got

_ROLES = ("user", "assistant")
# Required fields of each content block type: (field, expected Python type, described type).
_BLOCK_FIELDS: dict[str, tuple[tuple[str, type, str], ...]] = {
    "text": (("text", str, "a string"),),
    "image": (),
    "video": (),
    "tool_use": (("id", str, "a string"), ("name", str, "a string"), ("input", dict, "an object")),
    "tool_result": (("tool_use_id", str, "a string"),),
    "thinking": (("thinking", str, "a string"),),
    "redacted_thinking": (),
}


def check_messages(messages: Any) -> set[str]:
    """Check ``messages``; return the content block kinds they use."""
    if messages is None:
        raise Invalid("messages", "messages is required: a non-empty list of {role, content}")
    if not isinstance(messages, list) or not messages:
        raise Invalid(
            "messages",
            "messages must be a non-empty list of {role, content} objects, "
            f"got {_got(messages) if messages != [] else 'an empty list'}",
        )
    kinds: set[str] = set()
    for i, message in enumerate(messages):
        _check_message(message, f"messages[{i}]", kinds)
    return kinds


def _check_message(message: Any, where: str, kinds: set[str]) -> None:
    if not isinstance(message, dict):
        raise Invalid(where, f"must be an object with role and content, got {_got(message)}")
    if message.get("role") not in _ROLES:
        raise Invalid(
            f"{where}.role", f'must be "user" or "assistant", got {_got(message.get("role"))}'
        )
    _check_content(message.get("content"), f"{where}.content", kinds)


def _check_content(content: Any, where: str, kinds: set[str]) -> None:
    if isinstance(content, str):
        if not content.strip():
            raise Invalid(where, "must not be empty")
        return
    if not isinstance(content, list) or not content:
        shown = "an empty list" if content == [] else _got(content)
        raise Invalid(where, f"must be a non-empty string or list of blocks, got {shown}")
    for j, block in enumerate(content):
        kinds.add(_check_block(block, f"{where}[{j}]"))


def _check_block(block: Any, where: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    required = _BLOCK_FIELDS.get(kind) if isinstance(kind, str) else None
    if required is None:
        raise Invalid(
            f"{where}.type",
            f"{_got(kind)} is not a content block type; expected one of {', '.join(_BLOCK_FIELDS)}",
        )
    for field, expected, described in required:
        value = block.get(field)
        if not isinstance(value, expected):
            raise Invalid(f"{where}.{field}", f"must be {described}, got {_got(value)}")
    return str(kind)
