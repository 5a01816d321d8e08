"""Request validation as MiniMax documents it and was seen to answer; every refusal is a 400 (2013).

Beyond the documents (field evidence, ../shared/reference/minimax-field-evidence.md): a context
overflow says no numbers (row 2), M3 refuses max_tokens over 524,288 (row 3) and, by default,
thinking "enabled" (row 4, disputed). Size limits and media formats are the documented ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchrun.catalog import Catalog, ModelInfo
from batchrun.sim.errors import invalid
from batchrun.sim.settings import MB, SimSettings
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
# The formats MiniMax's Anthropic API page lists: images JPEG, PNG, GIF, WEBP; videos MP4, AVI,
# MOV, MKV. The media type names for the videos are the usual ones (an assumption: the page
# names only the formats).
MEDIA_TYPES = {
    "image": ("image/jpeg", "image/png", "image/gif", "image/webp"),
    "video": ("video/mp4", "video/x-msvideo", "video/avi", "video/quicktime", "video/x-matroska"),
}


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


def validate_message_request(
    body: Any, catalog: Catalog, settings: SimSettings | None = None
) -> SimRequest:
    """Check a POST /v1/messages body; raise ApiFailure (400) on the first problem."""
    settings = settings or SimSettings()
    model = _check_common(body, catalog, settings)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise invalid(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    cap = _per_model(settings.max_output_tokens, model.name) or model.max_output_tokens
    if cap is not None and max_tokens > cap:
        raise invalid(f"does not support max tokens > {cap}")
    _check_range(body, "temperature", 0.0, 2.0)
    _check_range(body, "top_p", 0.0, 1.0)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream must be true or false")
    input_tokens = count_request(body)
    if input_tokens + max_tokens > context_window(model, settings):
        raise invalid("context window exceeds limit")  # MiniMax gives no numbers
    return SimRequest(
        model=model,
        body=body,
        max_tokens=max_tokens,
        stream=stream,
        thinking=_thinking_on(body, model),
        forced_tool=_forced_tool(body),
        input_tokens=input_tokens,
    )


def validate_count_request(
    body: Any, catalog: Catalog, settings: SimSettings | None = None
) -> tuple[ModelInfo, int]:
    """Check a POST /v1/messages/count_tokens body; return the model and its input tokens."""
    model = _check_common(body, catalog, settings or SimSettings())
    return model, count_request(body)


def context_window(model: ModelInfo, settings: SimSettings) -> int:
    """The window the simulator serves for ``model``: a setting, else the catalog's."""
    window = _per_model(settings.context_windows, model.name)
    return model.context_window if window is None else window


def _per_model(values: Mapping[str, int], name: str) -> int | None:
    return values.get(name, values.get("*"))


def _check_common(body: Any, catalog: Catalog, settings: SimSettings) -> ModelInfo:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or name not in catalog:
        raise invalid(f"unknown model {name!r}; supported: {', '.join(catalog.names())}")
    model = catalog.get(name)
    _check_system(body.get("system"))
    _check_messages(body.get("messages"), model, settings)
    _check_tools(body)
    _check_thinking(body.get("thinking"), model, settings)
    return model


def _check_thinking(thinking: Any, model: ModelInfo, settings: SimSettings) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in _THINKING_TYPES:
        raise invalid('thinking must be {"type": "adaptive"} or {"type": "disabled"}')
    # M3 (thinking "adaptive" in the catalog) refused "enabled" for most who tried; M2.x take it.
    if (
        thinking["type"] == "enabled"
        and model.thinking == "adaptive"
        and not settings.accept_enabled_thinking
    ):
        raise invalid('invalid thinking.type: "enabled" (allowed: adaptive, disabled)')


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


def _check_messages(messages: Any, model: ModelInfo, settings: SimSettings) -> None:
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
            if block["type"] in MEDIA_TYPES:
                _check_media(block, f"{where}.content[{j}]", settings)


def _check_media(block: dict[str, Any], where: str, settings: SimSettings) -> None:
    """A base64 image or video: a listed media type, and no larger than MiniMax's limit.

    URL and mm_file:// sources are not fetched, so their format and size go unchecked.
    """
    kind = block["type"]
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return
    media_type = source.get("media_type")
    if media_type not in MEDIA_TYPES[kind]:
        raise invalid(
            f"{where}.source.media_type {media_type!r} is not a supported {kind} format; "
            f"supported: {', '.join(MEDIA_TYPES[kind])}"
        )
    data = source.get("data")
    if not isinstance(data, str):
        raise invalid(f"{where}.source.data must be a base64 string")
    limit = settings.max_image_bytes if kind == "image" else settings.max_video_bytes
    size = len(data.rstrip("=")) * 3 // 4  # decoded size, without decoding
    if size > limit:
        raise invalid(
            f"{where}: the {kind} is {size / MB:.1f} MB, over the {limit / MB:g} MB limit "
            f"for a base64 {kind}"
        )


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
