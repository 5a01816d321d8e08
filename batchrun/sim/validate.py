"""Request validation as MiniMax documents it; every refusal is a 400 with MiniMax's code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrun.catalog import Catalog, ModelInfo
from batchrun.sim.errors import TOKEN_LIMIT, invalid
from batchrun.sim.tokens import count_request

_BLOCK_KINDS = {
    "text",
    "image",
    "video",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
}
_THINKING_TYPES = {"adaptive", "enabled", "disabled"}
_TOOL_CHOICES = {"auto", "any", "tool", "none"}


@dataclass(frozen=True, kw_only=True)
class SimRequest:
    """A request that passed validation, with what generation needs to know."""

    model: ModelInfo
    body: dict[str, Any]
    max_tokens: int
    stream: bool
    thinking: bool
    forced_tool: dict[str, Any] | None
    input_tokens: int


def validate_message_request(body: Any, catalog: Catalog) -> SimRequest:
    """Check a POST /v1/messages body; raise ApiFailure (400) on the first problem."""
    model = _check_common(body, catalog)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise invalid(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    _check_range(body, "temperature", 0.0, 2.0)
    _check_range(body, "top_p", 0.0, 1.0)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream must be true or false")
    input_tokens = count_request(body)
    if input_tokens + max_tokens > model.context_window:
        raise invalid(
            f"input ({input_tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
            f"{model.name}'s context window of {model.context_window} tokens",
            TOKEN_LIMIT,
        )
    return SimRequest(
        model=model,
        body=body,
        max_tokens=max_tokens,
        stream=stream,
        thinking=_thinking_on(body, model),
        forced_tool=_forced_tool(body),
        input_tokens=input_tokens,
    )


def validate_count_request(body: Any, catalog: Catalog) -> tuple[ModelInfo, int]:
    """Check a POST /v1/messages/count_tokens body; return the model and its input tokens."""
    model = _check_common(body, catalog)
    return model, count_request(body)


def _check_common(body: Any, catalog: Catalog) -> ModelInfo:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or name not in catalog:
        raise invalid(f"unknown model {name!r}; supported: {', '.join(catalog.names())}")
    model = catalog.get(name)
    _check_system(body.get("system"))
    _check_messages(body.get("messages"), model)
    _check_tools(body)
    thinking = body.get("thinking")
    if thinking is not None and (
        not isinstance(thinking, dict) or thinking.get("type") not in _THINKING_TYPES
    ):
        raise invalid('thinking must be {"type": "adaptive"} or {"type": "disabled"}')
    return model


def _check_range(body: dict[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"{key} must be a number in [{low:g}, {high:g}], got {value!r}")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        raise invalid("system must be a string or a list of text blocks")


def _check_messages(messages: Any, model: ModelInfo) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise invalid(f'{where}.role must be "user" or "assistant"')
        content = message.get("content")
        if isinstance(content, str):
            if not content.strip():
                raise invalid(f"{where}.content must not be empty")
            continue
        if not isinstance(content, list) or not content:
            raise invalid(f"{where}.content must be a non-empty string or list of blocks")
        for j, block in enumerate(content):
            _check_block(block, f"{where}.content[{j}]", model)


def _check_block(block: Any, where: str, model: ModelInfo) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in _BLOCK_KINDS:
        raise invalid(f"{where}.type {kind!r} is not a supported content block type")
    if kind in ("image", "video") and not model.accepts(kind):
        raise invalid(f"{model.name} does not accept {kind} input (only MiniMax-M3 does)")
    if kind == "text" and not isinstance(block.get("text"), str):
        raise invalid(f"{where}.text must be a string")
    if kind == "tool_use" and not (
        isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
    ):
        raise invalid(f"{where} must have a string id and name")
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        raise invalid(f"{where}.tool_use_id must be a string")


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools must be a list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise invalid(f"tools[{i}] must have a string name")
            if not isinstance(tool.get("input_schema", {}), dict):
                raise invalid(f"tools[{i}].input_schema must be an object")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise invalid('tool_choice.type must be "auto", "any", "tool" or "none"')
    names = {tool["name"] for tool in tools or []}
    if choice["type"] in ("any", "tool") and not names:
        raise invalid("tool_choice requires a tool, but no tools were given")
    if choice["type"] == "tool" and choice.get("name") not in names:
        raise invalid(f"tool_choice names {choice.get('name')!r}, which is not in tools")


def _thinking_on(body: dict[str, Any], model: ModelInfo) -> bool:
    if model.thinking == "always":
        return True
    thinking = body.get("thinking") or {}
    return thinking.get("type") in ("adaptive", "enabled")


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice") or {}
    tools: list[dict[str, Any]] = body.get("tools") or []
    if choice.get("type") == "any":
        return tools[0]
    if choice.get("type") == "tool":
        return next(tool for tool in tools if tool["name"] == choice.get("name"))
    return None
