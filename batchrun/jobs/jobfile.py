"""Read a JSONL job file: one JobSpec per good line, one LineError per bad line.

Two line formats, mixable within one file:

* Anthropic's Message Batches line: ``{"custom_id": "q1", "params": {...Messages params...}}``
* shorthand: ``{"id": "q1", "model": "MiniMax-M3", "prompt": "Hello", "max_tokens": 256}``,
  where every other Messages parameter sits at the top level and ``prompt`` becomes one user
  message (or ``messages`` is given instead).

This is the client-side check; it mirrors what MiniMax refuses with a 400 so that a bad line is
reported before anything is sent, and it deliberately does not import the simulator.
"""

from __future__ import annotations

import difflib
import hashlib
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import orjson

from batchrun.catalog import Catalog, ModelInfo
from batchrun.exceptions import JobFileError
from batchrun.jobs.expect import ExpectationError, parse_expectation
from batchrun.jobs.jsonvalue import describe as _got

__all__ = [
    "JobSpec",
    "LineError",
    "ReadOptions",
    "check_file",
    "format_line_errors",
    "read_jobs",
]

EXAMPLE_LINE = (
    '{"custom_id": "q1", "params": {"model": "MiniMax-M3", "max_tokens": 256, '
    '"messages": [{"role": "user", "content": "Hello"}]}}'
)
EXAMPLE_SHORTHAND = '{"id": "q1", "model": "MiniMax-M3", "prompt": "Hello"}'
_HINT = (
    f"a job file is JSONL: one JSON object per line, such as {EXAMPLE_LINE} "
    f"or the shorthand {EXAMPLE_SHORTHAND}"
)

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
# The fields count_tokens counts: the content hash keys its cache.
_COUNTED = ("messages", "system", "tools", "tool_choice", "thinking")
_MAX_ID_CHARS = 256
_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 8192
_NO_REASONS: Mapping[str, str] = MappingProxyType({})
_ROLES = ("user", "assistant")
_THINKING_TYPES = ("adaptive", "enabled", "disabled")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
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


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One valid job line: Messages params ready to send, and the models it cannot run on."""

    line_no: int
    custom_id: str
    params: dict[str, Any]
    model: str | None
    invalid_for: Mapping[str, str]
    content_hash: str
    expect: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class LineError:
    """One unusable line, with the field at fault and what was expected."""

    path: str
    line_no: int
    field: str | None
    message: str
    custom_id: str | None

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.path}:{self.line_no}: {self.message}"
        return f"{self.path}:{self.line_no}: {self.field}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How to read a job file: the --models override and the default max_tokens."""

    models: Sequence[str] | None = None
    default_max_tokens: int = 1024


class _Invalid(Exception):
    """Raised inside line validation; turned into a LineError at the line boundary."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def under(self, prefix: str) -> _Invalid:
        """The same problem with its field placed under ``prefix`` (e.g. "params.")."""
        return _Invalid(f"{prefix}{self.field}" if self.field else prefix.rstrip("."), self.message)


# ---------------------------------------------------------------- whole file


def check_file(path: Path) -> None:
    """Raise JobFileError unless ``path`` looks like a readable, non-empty JSONL file."""
    where = str(path)
    try:
        if path.is_dir():
            raise JobFileError(where, f"is a directory, not a job file; {_HINT}")
        with path.open("rb") as stream:
            _check_head(where, stream.read(_SNIFF_BYTES))
            stream.seek(0)
            first, second = _first_two_lines(stream)
    except FileNotFoundError:
        raise JobFileError(where, "no such file") from None
    except OSError as exc:
        raise JobFileError(where, f"cannot read the file: {exc.strerror or exc}") from exc
    if first is None:
        raise JobFileError(where, f"the file is empty (or only whitespace); {_HINT}")
    _check_first_line(where, first, second)


def _check_head(where: str, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise JobFileError(where, f"the file is UTF-16 text; save it as UTF-8. {_HINT}")
    if b"\x00" in head:
        raise JobFileError(where, f"the file is binary (it contains NUL bytes), not text; {_HINT}")


def _first_two_lines(stream: IO[bytes]) -> tuple[bytes | None, bytes | None]:
    """The first two non-blank lines, stripped, with a leading BOM removed."""
    found: list[bytes | None] = []
    for line_no, raw in enumerate(stream, 1):
        line = raw[len(_BOM) :] if line_no == 1 and raw.startswith(_BOM) else raw
        if not _is_blank(line):
            found.append(line.strip())
            if len(found) == 2:
                break
    found += [None, None]
    return found[0], found[1]


def _check_first_line(where: str, first: bytes, second: bytes | None) -> None:
    if first.startswith(b"["):
        raise JobFileError(where, f"the file is a JSON array, not JSON Lines; {_HINT}", 1)
    if not first.startswith(b"{"):
        snippet = first[:40].decode("utf-8", "replace")
        raise JobFileError(
            where, f"the first line is not a JSON object (it starts {snippet!r}); {_HINT}"
        )
    if first == b"{" or (_is_unfinished(first) and _looks_indented(second)):
        raise JobFileError(
            where,
            f"the file looks like one pretty-printed JSON document, not JSON Lines; {_HINT}",
        )


def _is_unfinished(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return exc.pos >= len(line)
    return False


def _looks_indented(line: bytes | None) -> bool:
    # A pretty-printed document continues with indented keys or a closing bracket.
    return line is not None and line[:1] in (b'"', b"}", b"]")


def _is_blank(line: bytes) -> bool:
    return not line or line.isspace()


# ---------------------------------------------------------------- reading lines


def read_jobs(path: Path, catalog: Catalog, options: ReadOptions) -> Iterator[JobSpec | LineError]:
    """Stream ``path`` and yield one JobSpec or LineError per non-blank line, in file order."""
    check_file(path)
    reader = _Reader(str(path), catalog, options)
    return reader.read(path)


class _Reader:
    """Per-file state: target models, and the custom_id hashes seen so far."""

    def __init__(self, where: str, catalog: Catalog, options: ReadOptions) -> None:
        self.where = where
        self.catalog = catalog
        self.default_max_tokens = options.default_max_tokens
        # Validated here so an unknown --models name fails before the first line is read.
        self.forced: tuple[ModelInfo, ...] | None = (
            tuple(catalog.get(name) for name in options.models) if options.models else None
        )
        self.varying = _varying_kinds(catalog)
        self.seen = _IdIndex()

    def read(self, path: Path) -> Iterator[JobSpec | LineError]:
        """Yield a result per non-blank line of ``path``."""
        try:
            with path.open("rb") as stream:
                yield from self._read_stream(stream)
        except OSError as exc:
            raise JobFileError(self.where, f"cannot read the file: {exc.strerror or exc}") from exc

    def _read_stream(self, stream: IO[bytes]) -> Iterator[JobSpec | LineError]:
        for line_no, raw in enumerate(stream, 1):
            line = raw[len(_BOM) :] if line_no == 1 and raw.startswith(_BOM) else raw
            if not _is_blank(line):
                yield self.parse_line(line, line_no)

    def parse_line(self, line: bytes, line_no: int) -> JobSpec | LineError:
        """One JobSpec, or the first problem found as a LineError."""
        custom_id: str | None = None
        try:
            obj = _decode(line)
            custom_id, id_field = _read_custom_id(obj)
            self._check_unique(custom_id, id_field, line_no)
            return self._build(obj, custom_id, line_no)
        except _Invalid as exc:
            return LineError(
                path=self.where,
                line_no=line_no,
                field=exc.field,
                message=exc.message,
                custom_id=custom_id,
            )

    def _check_unique(self, custom_id: str, id_field: str, line_no: int) -> None:
        first = self.seen.first_line(custom_id, line_no)
        if first != line_no:
            raise _Invalid(
                id_field,
                f"duplicate custom_id {custom_id!r}: line {first} already uses it; "
                "every custom_id must be unique within the file",
            )

    def _build(self, obj: dict[str, Any], custom_id: str, line_no: int) -> JobSpec:
        batch = "params" in obj
        params = _batch_params(obj) if batch else _shorthand_params(obj)
        prefix = "params." if batch else ""
        expect = _read_expect(obj)
        try:
            model_name = params.pop("model", None)
            targets = self._targets(model_name)
            params.setdefault("max_tokens", self.default_max_tokens)
            kinds = _check_params(params)
            params.pop("stream", None)  # accepted, but batchrun always streams
        except _Invalid as exc:
            raise exc.under(prefix) from None
        return JobSpec(
            line_no=line_no,
            custom_id=custom_id,
            params=params,
            model=model_name,
            invalid_for=self._invalid_for(targets, params["max_tokens"], kinds),
            content_hash=_content_hash(params),
            expect=expect,
        )

    def _targets(self, name: Any) -> tuple[ModelInfo, ...]:
        if name is not None:
            model = self._model(name)
            if self.forced is None:
                return (model,)
        if self.forced is None:
            raise _Invalid("model", "no model: name one in the line or pass --models")
        return self.forced

    def _model(self, name: Any) -> ModelInfo:
        if not isinstance(name, str):
            raise _Invalid("model", f"model must be a string, got {_got(name)}")
        model = self.catalog.models.get(name)
        if model is None:
            known = self.catalog.names()
            raise _Invalid(
                "model",
                f"unknown model {name!r}{_did_you_mean(name, known)}; "
                f"known models: {', '.join(known)}",
            )
        return model

    def _invalid_for(
        self, targets: Sequence[ModelInfo], max_tokens: int, kinds: set[str]
    ) -> Mapping[str, str]:
        checked = sorted(kinds & self.varying.keys())
        reasons: dict[str, str] = {}
        for model in targets:
            why = [
                f"{model.name} does not accept {kind} input (only {self.varying[kind]})"
                for kind in checked
                if not model.accepts(kind)
            ]
            if max_tokens > model.context_window:
                why.append(
                    f"max_tokens {max_tokens} is more than {model.name}'s context window "
                    f"of {model.context_window} tokens"
                )
            if why:
                reasons[model.name] = "; ".join(why)
        return reasons or _NO_REASONS


class _IdIndex:
    """custom_id -> first line in 16-32 bytes per id: 64-bit hashes, never the strings.

    An open-addressing table in two flat arrays, because a dict of Python ints costs ~115 bytes
    per entry (116 MB for a million lines). Two ids sharing a 64-bit hash would be reported as
    duplicates: about one chance in 40 million for a file of a million ids.
    """

    def __init__(self) -> None:
        self.keys = array("Q", bytes(8 * 1024))  # 0 marks an empty slot
        self.lines = array("Q", bytes(8 * 1024))
        self.count = 0

    def first_line(self, custom_id: str, line_no: int) -> int:
        """The line that first used ``custom_id``; records ``line_no`` if none did."""
        digest = hashlib.blake2b(custom_id.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big") or 1
        keys, mask = self.keys, len(self.keys) - 1
        slot = key & mask
        while keys[slot]:
            if keys[slot] == key:
                return self.lines[slot]
            slot = (slot + 1) & mask
        keys[slot], self.lines[slot] = key, line_no
        self.count += 1
        if self.count * 2 > len(keys):  # keep probe chains short: at most half full
            self._grow()
        return line_no

    def _grow(self) -> None:
        old = zip(self.keys, self.lines, strict=True)
        size = len(self.keys) * 2
        self.keys, self.lines = array("Q", bytes(8 * size)), array("Q", bytes(8 * size))
        mask = size - 1
        for key, line_no in old:
            if key:
                slot = key & mask
                while self.keys[slot]:
                    slot = (slot + 1) & mask
                self.keys[slot], self.lines[slot] = key, line_no


def _varying_kinds(catalog: Catalog) -> dict[str, str]:
    """Block kinds some models accept and others do not -> "X does" / "X, Y do"."""
    models = list(catalog)
    every = {kind for model in models for kind in model.content_kinds}
    varying: dict[str, str] = {}
    for kind in sorted(every):
        takers = [model.name for model in models if model.accepts(kind)]
        if len(takers) < len(models):
            varying[kind] = f"{', '.join(takers)} {'does' if len(takers) == 1 else 'do'}"
    return varying


def _decode(line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _syntax_error(line, exc) from None
    if not isinstance(value, dict):
        raise _Invalid(None, f"the line is {_got(value)}, not a JSON object; {_HINT}")
    return value


def _syntax_error(line: bytes, exc: orjson.JSONDecodeError) -> _Invalid:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _Invalid(
            None,
            f"the line is not UTF-8 text (byte 0x{line[bad.start]:02x} at byte {bad.start + 1}); "
            "save the file as UTF-8",
        )
    message = f"invalid JSON at column {exc.colno}: {exc.msg}"
    if not line.endswith(b"\n"):
        message += " (the last line has no newline: was the file cut short?)"
    return _Invalid(None, message)


def _read_custom_id(obj: dict[str, Any]) -> tuple[str, str]:
    """The line's custom_id and the key it was given under ("custom_id" or "id")."""
    batch = "params" in obj
    if "custom_id" in obj and "id" in obj and not batch:
        raise _Invalid("id", 'give either "custom_id" or "id", not both')
    field = "id" if "id" in obj and not batch else "custom_id"
    value = obj.get(field)
    if value is None:
        raise _Invalid(
            "custom_id",
            'no custom_id: every line needs a unique "custom_id" ("id" also works in the '
            "shorthand format)",
        )
    if not isinstance(value, str) or not value:
        raise _Invalid(field, f"{field} must be a non-empty string, got {_got(value)}")
    if len(value) > _MAX_ID_CHARS:
        raise _Invalid(
            field, f"{field} must be at most {_MAX_ID_CHARS} characters, got {len(value)}"
        )
    return value, field


def _read_expect(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The line's expectation, validated (batchrun.jobs.expect), in its canonical JSON."""
    if "expect" not in obj:
        return None
    try:
        return parse_expectation(obj["expect"]).to_json()
    except ExpectationError as exc:
        raise _Invalid(exc.field, exc.message) from None


def _batch_params(obj: dict[str, Any]) -> dict[str, Any]:
    for key in obj:
        if key not in _BATCH_KEYS:
            raise _Invalid(
                key,
                f"unknown field {key!r} in a batch line{_did_you_mean(key, _BATCH_KEYS)}; "
                'a batch line has "custom_id", "params" and optionally "expect", '
                'with every Messages parameter inside "params"',
            )
    params = obj["params"]
    if not isinstance(params, dict):
        raise _Invalid(
            "params", f"params must be an object of Messages parameters, got {_got(params)}"
        )
    _check_names(params, _KNOWN_PARAMS, KNOWN_PARAMS, "params.")
    return params


def _shorthand_params(obj: dict[str, Any]) -> dict[str, Any]:
    _check_names(obj, _SHORTHAND_ALLOWED, (*_SHORTHAND_KEYS, *KNOWN_PARAMS), "")
    params = {key: value for key, value in obj.items() if key not in _SHORTHAND_KEYS}
    prompt = obj.get("prompt")
    if "prompt" in obj and "messages" in obj:
        raise _Invalid("prompt", 'give either "prompt" or "messages", not both')
    if "messages" in obj:
        return params
    if prompt is None:
        raise _Invalid("prompt", 'no prompt: give "prompt" (a string) or "messages"')
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Invalid("prompt", f"prompt must be a non-empty string, got {_got(prompt)}")
    params["messages"] = [{"role": "user", "content": prompt}]
    return params


def _check_names(
    obj: dict[str, Any], allowed: frozenset[str], known: Sequence[str], prefix: str
) -> None:
    for key in obj:
        if key not in allowed:
            raise _Invalid(
                f"{prefix}{key}",
                f"unknown parameter {key!r}{_did_you_mean(key, known)}; "
                f"known Messages parameters: {', '.join(KNOWN_PARAMS)}",
            )


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _content_hash(params: dict[str, Any]) -> str:
    counted = {key: params[key] for key in _COUNTED if key in params}
    return hashlib.sha256(orjson.dumps(counted, option=orjson.OPT_SORT_KEYS)).hexdigest()


# ---------------------------------------------------------------- parameter rules


def _check_params(params: dict[str, Any]) -> set[str]:
    """Check every parameter; return the content block kinds the messages use."""
    for name, value in params.items():
        check = _CHECKS.get(name)
        if check is not None:
            check(name, value)
    kinds = _check_messages(params.get("messages"))
    if "tool_choice" in params:
        _check_tool_choice(params["tool_choice"], params.get("tools"))
    return kinds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(low: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not _is_int(value) or value < low:
            raise _Invalid(name, f"{name} must be an integer >= {low}, got {_got(value)}")

    return check


def _number_in(low: int, high: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not _is_number(value) or not low <= value <= high:
            raise _Invalid(name, f"{name} must be a number in [{low}, {high}], got {_got(value)}")

    return check


def _of_type(kind: type | tuple[type, ...], described: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _Invalid(name, f"{name} must be {described}, got {_got(value)}")

    return check


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _Invalid(name, f"{name} must be true or false, got {_got(value)}")


def _check_list_of(item: type, plural: str, described: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, list):
            raise _Invalid(name, f"{name} must be a list of {plural}, got {_got(value)}")
        for i, entry in enumerate(value):
            if not isinstance(entry, item):
                raise _Invalid(f"{name}[{i}]", f"must be {described}, got {_got(entry)}")

    return check


def _check_system(name: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _Invalid(name, f"system must be a string or a list of text blocks, got {_got(value)}")
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(f"{name}[{i}]", 'must be a text block {"type": "text", "text": "..."}')
        if not isinstance(block.get("text"), str):
            raise _Invalid(f"{name}[{i}].text", f"must be a string, got {_got(block.get('text'))}")


def _check_thinking(name: str, value: Any) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _THINKING_TYPES:
        raise _Invalid(
            name,
            'thinking must be an object {"type": "adaptive"}, {"type": "enabled"} or '
            f'{{"type": "disabled"}}, got {_got(value)}',
        )


def _check_tools(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _Invalid(name, f"tools must be a list of tool objects, got {_got(value)}")
    for i, tool in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(tool, dict):
            raise _Invalid(where, f"must be an object with a name, got {_got(tool)}")
        if not isinstance(tool.get("name"), str):
            raise _Invalid(f"{where}.name", f"must be a string, got {_got(tool.get('name'))}")
        if "input_schema" in tool and not isinstance(tool["input_schema"], dict):
            raise _Invalid(
                f"{where}.input_schema",
                f"must be a JSON Schema object, got {_got(tool['input_schema'])}",
            )


def _check_tool_choice(choice: Any, tools: Any) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in _TOOL_CHOICES:
        raise _Invalid(
            "tool_choice",
            'tool_choice must be an object whose type is "auto", "any", "tool" or "none", '
            f"got {_got(choice)}",
        )
    names = {tool["name"] for tool in tools or ()}
    if kind in ("any", "tool") and not names:
        raise _Invalid("tool_choice", f'tool_choice type "{kind}" needs tools, but none are given')
    if kind == "tool" and choice.get("name") not in names:
        raise _Invalid(
            "tool_choice.name",
            f"names {_got(choice.get('name'))}, which is not in tools ({', '.join(sorted(names))})",
        )


def _check_messages(messages: Any) -> set[str]:
    if messages is None:
        raise _Invalid("messages", "messages is required: a non-empty list of {role, content}")
    if not isinstance(messages, list) or not messages:
        raise _Invalid(
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
        raise _Invalid(where, f"must be an object with role and content, got {_got(message)}")
    if message.get("role") not in _ROLES:
        raise _Invalid(
            f"{where}.role", f'must be "user" or "assistant", got {_got(message.get("role"))}'
        )
    content = message.get("content")
    if isinstance(content, str):
        if not content.strip():
            raise _Invalid(f"{where}.content", "must not be empty")
        return
    if not isinstance(content, list) or not content:
        shown = "an empty list" if content == [] else _got(content)
        raise _Invalid(
            f"{where}.content", f"must be a non-empty string or list of blocks, got {shown}"
        )
    for j, block in enumerate(content):
        kinds.add(_check_block(block, f"{where}.content[{j}]"))


def _check_block(block: Any, where: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    required = _BLOCK_FIELDS.get(kind) if isinstance(kind, str) else None
    if required is None:
        raise _Invalid(
            f"{where}.type",
            f"{_got(kind)} is not a content block type; expected one of {', '.join(_BLOCK_FIELDS)}",
        )
    for field, expected, described in required:
        value = block.get(field)
        if not isinstance(value, expected):
            raise _Invalid(f"{where}.{field}", f"must be {described}, got {_got(value)}")
    return str(kind)


_CHECKS: dict[str, Callable[[str, Any], None]] = {
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


# ---------------------------------------------------------------- reporting


def format_line_errors(errors: Sequence[LineError], limit: int = 20) -> str:
    """Up to ``limit`` errors, one per line, then "... and N more"."""
    shown = [str(error) for error in errors[:limit]]
    if len(errors) > limit:
        shown.append(f"... and {len(errors) - limit} more")
    return "\n".join(shown)
