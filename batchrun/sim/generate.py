"""What the simulator answers: content, usage and timing of one reply, drawn from a seeded RNG.

The same request body (whether streamed or not) with the same seed always gets the same reply.
Each generated token is one delta, so ``output_tokens`` is exactly the number of thinking and
text deltas plus the tokens of any tool input. A last user message with an ``#answer: X`` line
gets exactly ``X`` as its text (how tests and demos steer what grading sees); when the reasoning
leaks into the text, ``X`` is still the whole visible answer after ``</think>``.

MiniMax's reported deviations come at set rates, each drawn from the request's seed: reasoning
leaked into the text (``think_leak_rate``), M3's empty replies (``empty_reply_rate``) and tools
called under ``tool_choice`` auto (``tool_call_rate``).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson

from batchrun.sim.settings import SimSettings
from batchrun.sim.tokens import count_text
from batchrun.sim.validate import SimRequest

_WORD_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at which but
have an they you were her she there been one all we their has would when if so no what up out
about who more some will time into them can only other new these two may first then do any like
my now over such our man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good
very make world still own see men work long get here between both life being under never day
same another know while last might us great old year off come since against go came right used
take three model answer batch token stream latency cost budget request result value signal system
memory network compute reason evidence method measure
"""
_WORDS = tuple(_WORD_TEXT.split())


@dataclass(kw_only=True)
class Block:
    """One content block of a reply."""

    kind: str  # "thinking", "text" or "tool_use"
    pieces: list[str] = field(default_factory=list)  # one delta each
    signature: str = ""
    tool_id: str = ""
    tool_name: str = ""
    tool_input: Any = None

    def text(self) -> str:
        """The block's whole text (thinking, text, or tool input JSON)."""
        return "".join(self.pieces)


@dataclass(kw_only=True)
class Reply:
    """A complete reply: content, usage, stop reason, and when each token is due."""

    message_id: str
    model: str
    blocks: list[Block]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    start_offset: float  # seconds after the request until message_start
    token_offsets: list[float]  # seconds after the request at which each delta is due
    null_content: bool = False  # MiniMax's empty reply: no blocks, "content": null


def request_seed(body: dict[str, Any], seed: int) -> int:
    """A seed that depends on the request's content (not on ``stream``) and the server seed."""
    content = {key: value for key, value in body.items() if key != "stream"}
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()
    return int.from_bytes(digest[:8], "big") ^ seed


def draw_reply(
    request: SimRequest, settings: SimSettings, cached: tuple[int, int] = (0, 0)
) -> Reply:
    """Draw the reply to a validated request; ``cached`` is (tokens written, tokens read)."""
    seed = request_seed(request.body, settings.seed)
    rng = random.Random(seed)
    if _empty_reply_drawn(request, settings, seed):
        return _reply(
            rng,
            settings,
            request,
            cached,
            blocks=[],
            stop_reason="end_turn",
            output=1,
            null_content=True,
        )
    blocks: list[Block] = []
    budget = request.max_tokens
    if request.thinking:
        wanted = _lognormal_int(rng, settings.thinking_median, settings.output_sigma)
        blocks.append(_thinking_block(rng, min(wanted, budget)))
        budget -= len(blocks[0].pieces)
    tool = request.forced_tool or _auto_tool(request, settings, seed)
    stop_reason, answer_tokens = (
        _answer(request, settings, rng, budget, blocks, tool=tool) if budget else ("max_tokens", 0)
    )
    output = request.max_tokens - budget + answer_tokens
    if request.thinking and _chance(seed, _LEAK_SALT, settings.think_leak_rate):
        blocks, output, stop_reason = _leak_reasoning(blocks, request.max_tokens, stop_reason)
    return _reply(
        rng, settings, request, cached, blocks=blocks, stop_reason=stop_reason, output=output
    )


def _reply(
    rng: random.Random,
    settings: SimSettings,
    request: SimRequest,
    cached: tuple[int, int],
    *,
    blocks: list[Block],
    stop_reason: str,
    output: int,
    null_content: bool = False,
) -> Reply:
    """The Reply around drawn content (``null_content``: MiniMax's empty reply)."""
    written, read = cached
    return Reply(
        message_id=f"msg_{rng.getrandbits(96):024x}",
        model=request.model.name,
        blocks=blocks,
        stop_reason=stop_reason,
        input_tokens=request.input_tokens - written - read,
        output_tokens=output,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=read,
        null_content=null_content,
        **_timing(rng, settings, request, output),
    )


# Salts keep each per-request decision independent of the others and of the drawn content, so a
# rate of 0 leaves every reply exactly as it was, and a leaked reply has the same reasoning and
# answer as its clean twin.
_LEAK_SALT = 0x7E1C_0001
_EMPTY_SALT = 0x7E1C_0002
_TOOL_SALT = 0x7E1C_0003
_PICK_SALT = 0x7E1C_0004
EMPTY_REPLY_MODELS = frozenset({"MiniMax-M3"})  # row 6: seen on M3 only (single report)


def _uniform(seed: int, salt: int) -> float:
    """A number in [0, 1) drawn from ``seed`` and ``salt`` (splitmix64's finalizer)."""
    mask = (1 << 64) - 1
    z = ((seed ^ salt) + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) / (1 << 64)


def _chance(seed: int, salt: int, rate: float) -> bool:
    return rate > 0 and _uniform(seed, salt) < rate


def _empty_reply_drawn(request: SimRequest, settings: SimSettings, seed: int) -> bool:
    """Whether this is one of MiniMax-M3's empty replies (only ever without thinking)."""
    return (
        not request.thinking
        and request.model.name in EMPTY_REPLY_MODELS
        and _chance(seed, _EMPTY_SALT, settings.empty_reply_rate)
    )


def _auto_tool(request: SimRequest, settings: SimSettings, seed: int) -> dict[str, Any] | None:
    """The tool called of the model's own accord (tool_choice auto or absent), if any.

    The simulator cannot tell whether a tool fits the prompt, so it calls one at a set rate.
    """
    tools: list[dict[str, Any]] = request.body.get("tools") or []
    choice = (request.body.get("tool_choice") or {}).get("type", "auto")
    if not tools or choice != "auto" or not _chance(seed, _TOOL_SALT, settings.tool_call_rate):
        return None
    return tools[int(_uniform(seed, _PICK_SALT) * len(tools))]


def _leak_reasoning(
    blocks: list[Block], max_tokens: int, stop_reason: str
) -> tuple[list[Block], int, str]:
    """The reply with its thinking block sent as text instead (row 5, contract C10).

    The text is ``<think>``, the reasoning, ``</think>``, a blank line, then the answer; each tag
    is one piece and one token. Reasoning gives way so that the answer (and any tool call) still
    fits in ``max_tokens``; a reply cut off while thinking has no ``</think>``. Returns the
    blocks, the output tokens and the stop reason.
    """
    thinking, rest = blocks[0], blocks[1:]
    answer = rest[0] if rest and rest[0].kind == "text" else None
    tool = rest[0] if rest and rest[0].kind == "tool_use" else None
    if answer is None and tool is None:  # max_tokens hit while thinking: the tag stays open
        text = Block(kind="text", pieces=["<think>", *thinking.pieces][:max_tokens])
        return [text], len(text.pieces), stop_reason
    tool_tokens = count_text(tool.text()) if tool is not None else 0
    tail = ["</think>", "\n\n", *answer.pieces] if answer is not None else ["</think>"]
    room = max_tokens - tool_tokens - 1 - len(tail)  # reasoning pieces that still fit
    if room < 0:  # not even the answer fits beside the tags: cut at max_tokens, tool dropped
        pieces = ["<think>", *thinking.pieces, *tail][:max_tokens]
        return [Block(kind="text", pieces=pieces)], len(pieces), "max_tokens"
    text = Block(kind="text", pieces=["<think>", *thinking.pieces[:room], *tail])
    leaked = [text, tool] if tool is not None else [text]
    return leaked, len(text.pieces) + tool_tokens, stop_reason


def _answer(
    request: SimRequest,
    settings: SimSettings,
    rng: random.Random,
    budget: int,
    blocks: list[Block],
    *,
    tool: dict[str, Any] | None,
) -> tuple[str, int]:
    if tool is not None:
        block = _tool_block(rng, tool)
        tokens = count_text(block.text())
        if tokens > budget:
            return "max_tokens", 0
        blocks.append(block)
        return "tool_use", tokens
    marked = marked_answer(request.body, request.model.name)
    if marked is not None:  # a test's steer: the answer is exactly the marked text
        pieces = _MARKED_PIECE.findall(marked)
        blocks.append(Block(kind="text", pieces=pieces[:budget]))
        return ("max_tokens" if len(pieces) > budget else "end_turn"), len(blocks[-1].pieces)
    wanted = max(1, _lognormal_int(rng, settings.output_median, settings.output_sigma))
    blocks.append(Block(kind="text", pieces=_words(rng, min(wanted, budget), sentence=True)))
    return ("max_tokens" if wanted >= budget else "end_turn"), len(blocks[-1].pieces)


_MARKER = re.compile(r"#answer(?:\[([^\]\n]+)\])?:[ \t]*([^\n]*\S)")
_MARKED_PIECE = re.compile(r"\s*\S+")


def marked_answer(body: dict[str, Any], model: str = "") -> str | None:
    """The text after ``#answer:`` (to the end of its line) in the last user message, if any;
    an ``#answer[MODEL]:`` line wins for that model (so a demo's models can differ).
    """
    messages = body.get("messages") or ()
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    if isinstance(content, list):
        content = "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    if not isinstance(content, str):
        return None
    found: dict[str | None, str] = {}
    for match in _MARKER.finditer(content):
        found.setdefault(match.group(1), match.group(2))  # the first of each kind counts
    return found.get(model, found.get(None))


def _thinking_block(rng: random.Random, length: int) -> Block:
    pieces = _words(rng, length, sentence=False)
    signature = hashlib.sha256("".join(pieces).encode()).hexdigest()
    return Block(kind="thinking", pieces=pieces, signature=signature)


def _tool_block(rng: random.Random, tool: dict[str, Any]) -> Block:
    value = sample_schema(tool.get("input_schema") or {"type": "object"}, rng)
    text = orjson.dumps(value).decode()
    pieces = [text[i : i + 12] for i in range(0, len(text), 12)] or ["{}"]
    return Block(
        kind="tool_use",
        pieces=pieces,
        tool_id=f"toolu_{rng.getrandbits(96):024x}",
        tool_name=str(tool["name"]),
        tool_input=value,
    )


def _words(rng: random.Random, count: int, *, sentence: bool) -> list[str]:
    """``count`` single-token pieces of filler text, each one delta."""
    words = rng.choices(_WORDS, k=count)
    pieces = [" " + word for word in words]
    if sentence:
        for i in range(11, count, 12):
            pieces[i] = "."
            if i + 1 < count:
                pieces[i + 1] = " " + words[i + 1].capitalize()
    if pieces:
        pieces[0] = words[0].capitalize()
    return pieces


def _lognormal_int(rng: random.Random, median: float, sigma: float) -> int:
    return max(1, round(median * math.exp(rng.gauss(0.0, sigma))))


def _timing(
    rng: random.Random, settings: SimSettings, request: SimRequest, output: int
) -> dict[str, Any]:
    scale = settings.time_scale
    ttft = settings.ttft_median * math.exp(rng.gauss(0.0, settings.ttft_sigma))
    speed = request.model.speed_tps or settings.fallback_speed_tps
    step = 1.0 / speed
    jitter = settings.speed_jitter
    if not scale:
        return {"start_offset": 0.0, "token_offsets": [0.0] * output}
    gaps = [step * (1.0 + jitter * (2.0 * rng.random() - 1.0)) for _ in range(max(0, output - 1))]
    offsets = [scale * t for t in accumulate(gaps, initial=ttft)] if output else []
    return {"start_offset": scale * ttft * 0.5, "token_offsets": offsets}


def sample_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema: types, enum, const, bounds, required."""
    if not isinstance(schema, dict):
        return "value"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample_schema(schema[key][0], rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _SAMPLERS.get(kind, _sample_string)(schema, rng, depth)


def _sample_object(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    return {
        name: sample_schema(sub, rng, depth + 1)
        for name, sub in properties.items()
        if name in required or (depth < 3 and rng.random() < 0.5)
    }


def _sample_array(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = int(schema.get("minItems", 1))
    high = max(low, int(schema.get("maxItems", low + 2)))
    count = rng.randint(low, high) if depth < 3 else low
    return [sample_schema(schema.get("items", {}), rng, depth + 1) for _ in range(count)]


def _sample_string(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = int(schema.get("minLength", 1))
    high = int(schema.get("maxLength", max(low, 24)))
    text = " ".join(rng.choices(_WORDS, k=4))
    return (text * (low // max(1, len(text)) + 1))[: max(low, min(high, len(text)))]


def _sample_integer(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = math.ceil(schema.get("minimum", 0))
    high = math.floor(schema.get("maximum", low + 100))
    return rng.randint(low, max(low, high))


def _sample_number(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = float(schema.get("minimum", 0.0))
    high = float(schema.get("maximum", low + 100.0))
    return round(rng.uniform(low, max(low, high)), 3)


_SAMPLERS: dict[str, Callable[[dict[str, Any], random.Random, int], Any]] = {
    "object": _sample_object,
    "array": _sample_array,
    "string": _sample_string,
    "integer": _sample_integer,
    "number": _sample_number,
    "boolean": lambda schema, rng, depth: rng.random() < 0.5,
    "null": lambda schema, rng, depth: None,
}
