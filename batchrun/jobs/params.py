"""The rules of each Messages parameter, as MiniMax enforces them with a 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchrun.jobs.errors import Invalid
from batchrun.jobs.jsonvalue import describe as _got
from batchrun.jobs.messages import check_messages

_THINKING_TYPES = ("adaptive", "enabled", "disabled")
_TOOL_CHOICES = ("auto", "any", "tool", "none")

Check = Callable[[str, Any], None]


def check_params(params: dict[str, Any]) -> set[str]:
    """Check every parameter; return the content block kinds the messages use."""
    for name, value in params.items():
        check = _CHECKS.get(name)
        if check is not None:
            check(name, value)
    kinds = check_messages(params.get("messages"))
    if "tool_choice" in params:
        _check_tool_choice(params["tool_choice"], params.get("tools"))
    return kinds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(low: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not _is_int(value) or value < low:
            raise Invalid(name, f"{name} must be an integer >= {low}, got {_got(value)}")

    return check


def _number_in(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not _is_number(value) or not low <= value <= high:
            raise Invalid(name, f"{name} must be a number in [{low}, {high}], got {_got(value)}")

    return check


def _of_type(kind: type | tuple[type, ...], described: str) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Invalid(name, f"{name} must be {described}, got {_got(value)}")

    return check


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise Invalid(name, f"{name} must be true or false, got {_got(value)}")


def _check_list_of(item: type, plural: str, described: str) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, list):
            raise Invalid(name, f"{name} must be a list of {plural}, got {_got(value)}")
        for i, entry in enumerate(value):
            if not isinstance(entry, item):
                raise Invalid(f"{name}[{i}]", f"must be {described}, got {_got(entry)}")

    return check


def _check_system(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise Invalid(name, f"system must be a string or a list of text blocks, got {_got(value)}")
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Invalid(f"{name}[{i}]", 'must be a text block {"type": "text", "text": "..."}')
        if not isinstance(block.get("text"), str):
            raise Invalid(f"{name}[{i}].text", f"must be a string, got {_got(block.get('text'))}")


def _check_thinking(name: str, value: Any) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _THINKING_TYPES:
        raise Invalid(
            name,
            'thinking must be an object {"type": "adaptive"}, {"type": "enabled"} or '
            f'{{"type": "disabled"}}, got {_got(value)}',
        )


def _check_tools(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise Invalid(name, f"tools must be a list of tool objects, got {_got(value)}")
    for i, tool in enumerate(value):
        _check_tool(tool, f"{name}[{i}]")


def _check_tool(tool: Any, where: str) -> None:
    if not isinstance(tool, dict):
        raise Invalid(where, f"must be an object with a name, got {_got(tool)}")
    if not isinstance(tool.get("name"), str):
        raise Invalid(f"{where}.name", f"must be a string, got {_got(tool.get('name'))}")
    if "input_schema" in tool and not isinstance(tool["input_schema"], dict):
        raise Invalid(
            f"{where}.input_schema",
            f"must be a JSON Schema object, got {_got(tool['input_schema'])}",
        )


def _check_tool_choice(choice: Any, tools: Any) -> None:
    kind = _tool_choice_kind(choice)
    names = {tool["name"] for tool in tools or ()}
    if kind in ("any", "tool") and not names:
        raise Invalid("tool_choice", f'tool_choice type "{kind}" needs tools, but none are given')
    if kind == "tool" and choice.get("name") not in names:
        raise Invalid(
            "tool_choice.name",
            f"names {_got(choice.get('name'))}, which is not in tools ({', '.join(sorted(names))})",
        )


def _tool_choice_kind(choice: Any) -> str:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in _TOOL_CHOICES:
        raise Invalid(
            "tool_choice",
            'tool_choice must be an object whose type is "auto", "any", "tool" or "none", '
            f"got {_got(choice)}",
        )
    return str(kind)


_CHECKS: dict[str, Check] = {
    "max_tokens": _int_at_least(1),
    "system": _check_system,
    "temperature": _number_in(0, 2),
    "top_p": _number_in(0, 1),
    "top_k": _int_at_least(0),
    "stop_sequences": _check_list_of(str, "strings", "a string"),
    "stream": _check_bool,
    "metadata": _of_type(dict, "an object"),
    "tools": _check_tools,
    "thinking": _check_thinking,
    "service_tier": _of_type(str, "a string"),
    "container": _of_type((str, dict), "a string or an object"),
    "mcp_servers": _check_list_of(dict, "objects", "an object"),
    "context_management": _of_type(dict, "an object"),
    "cache_control": _of_type(dict, "an object"),
    "output_config": _of_type(dict, "an object"),
    "inference_geo": _of_type(str, "a string"),
}
