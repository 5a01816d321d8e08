"""The job file reader, on real files in tmp_path: both line formats and every hostile input."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.catalog import Catalog, load_catalog
from batchrun.exceptions import JobFileError, UnknownModelError
from batchrun.jobs import (
    JobSpec,
    LineError,
    ReadOptions,
    check_file,
    format_line_errors,
    read_jobs,
)

CORPUS = Path(__file__).parent / "data" / "jobfiles"
M3 = "MiniMax-M3"
M27 = "MiniMax-M2.7"
USER_HI = [{"role": "user", "content": "Hi"}]

Line = dict[str, Any] | str | bytes
Results = list[JobSpec | LineError]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The built-in catalog."""
    return load_catalog()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write lines (dicts become JSON) to a .jsonl file in tmp_path and return its path."""

    def write_lines(*lines: Line, name: str = "jobs.jsonl", end: bytes = b"\n") -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(_encode(line) + end for line in lines))
        return path

    return write_lines


@pytest.fixture
def read(catalog: Catalog) -> Callable[..., Results]:
    """Read a job file to a list with the given ReadOptions fields."""

    def read_all(path: Path, **options: Any) -> Results:
        return list(read_jobs(path, catalog, ReadOptions(**options)))

    return read_all


def _encode(line: Line) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode()
    return orjson.dumps(line)


def batch(custom_id: str = "q1", **params: Any) -> dict[str, Any]:
    """A Message Batches line with a model and one user message unless overridden."""
    return {"custom_id": custom_id, "params": {"model": M3, "messages": USER_HI, **params}}


def short(custom_id: str = "q1", **fields: Any) -> dict[str, Any]:
    """A shorthand line with a model and a prompt unless overridden."""
    return {"id": custom_id, "model": M3, "prompt": "Hi", **fields}


def only(results: Results) -> JobSpec | LineError:
    assert len(results) == 1, results
    return results[0]


def job(results: Results) -> JobSpec:
    result = only(results)
    assert isinstance(result, JobSpec), str(result)
    return result


def error(results: Results) -> LineError:
    result = only(results)
    assert isinstance(result, LineError), result
    return result


def counted_hash(params: dict[str, Any]) -> str:
    keys = ("messages", "system", "tools", "tool_choice", "thinking")
    counted = {key: params[key] for key in keys if key in params}
    return hashlib.sha256(orjson.dumps(counted, option=orjson.OPT_SORT_KEYS)).hexdigest()


# ---------------------------------------------------------------- the two formats


def test_batch_line(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    spec = job(read(write(batch("a", max_tokens=50, temperature=0.2, stream=True))))
    assert spec.line_no == 1
    assert spec.custom_id == "a"
    assert spec.model == M3
    assert spec.params == {"messages": USER_HI, "max_tokens": 50, "temperature": 0.2}
    assert spec.invalid_for == {}
    assert spec.expect is None
    assert spec.content_hash == counted_hash(spec.params)


def test_shorthand_line(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    line = short("s1", prompt="Bonjour ☃", system="Be brief.", top_p=0.5, max_tokens=10)
    spec = job(read(write(line)))
    assert spec.custom_id == "s1"
    assert spec.model == M3
    assert spec.params == {
        "system": "Be brief.",
        "top_p": 0.5,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Bonjour ☃"}],
    }


def test_shorthand_accepts_custom_id_and_messages(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    line = {"custom_id": "c", "model": M27, "messages": turns}
    spec = job(read(write(line)))
    assert spec.custom_id == "c"
    assert spec.params["messages"] == turns


def test_mixed_formats_keep_order_and_line_numbers(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(batch("a"), "", short("b"), "   ", batch("c"))
    results = read(path)
    assert [(r.line_no, r.custom_id) for r in results] == [(1, "a"), (3, "b"), (5, "c")]
    assert all(isinstance(r, JobSpec) for r in results)


def test_same_content_same_hash_in_both_formats(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    first, second, third, fourth = read(
        write(
            batch("a", system="S", max_tokens=5),
            short("b", prompt="Hi", system="S", temperature=1, model=M27),
            {"custom_id": "c", "params": {"system": "S", "messages": USER_HI, "model": M3}},
            short("d", prompt="Hi", system="other"),
        )
    )
    assert isinstance(first, JobSpec)
    assert isinstance(second, JobSpec)
    assert isinstance(third, JobSpec)
    assert isinstance(fourth, JobSpec)
    # Key order, max_tokens, temperature and the model do not count; the system prompt does.
    assert first.content_hash == second.content_hash == third.content_hash
    assert fourth.content_hash != first.content_hash


def test_expect_is_kept_in_its_canonical_form(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    expect = {"contains": "Paris", "regex": "x", "flags": "si"}
    path = write({**batch("a"), "expect": expect}, short("b", expect=expect))
    canonical = {"contains": ["Paris"], "regex": "x", "flags": "is"}
    assert [r.expect for r in read(path) if isinstance(r, JobSpec)] == [canonical, canonical]


@pytest.mark.parametrize("line", [{**batch("a"), "expect": "Paris"}, short("a", expect=[1])])
def test_expect_must_be_an_object(
    write: Callable[..., Path], read: Callable[..., Results], line: dict[str, Any]
) -> None:
    err = error(read(write(line)))
    assert err.field == "expect"
    assert str(err).startswith(f"{write(line)}:1: expect: expect must be a JSON object, got")
    assert err.custom_id == "a"


def test_default_max_tokens(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(batch("a"), short("b"), short("c", max_tokens=7))
    assert [r.params["max_tokens"] for r in read(path) if isinstance(r, JobSpec)] == [
        1024,
        1024,
        7,
    ]
    options = {"default_max_tokens": 99}
    assert [r.params["max_tokens"] for r in read(path, **options) if isinstance(r, JobSpec)] == [
        99,
        99,
        7,
    ]


def test_thinking_values(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(*(short(kind, thinking={"type": kind}) for kind in ("adaptive", "enabled")))
    assert all(isinstance(r, JobSpec) for r in read(path))
    spec = job(read(write(short("d", thinking={"type": "disabled"}, model=M27))))
    assert spec.invalid_for == {}  # M2.x accepts "disabled" and ignores it


def test_tools_and_every_block_type(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "noop"}]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "call it", "signature": "x"},
                {"type": "redacted_thinking", "data": "..."},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "9"}]},
    ]
    line = batch(
        "a",
        model=M27,
        messages=messages,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        metadata={"user_id": "u"},
        top_k=5,
    )
    spec = job(read(write(line)))
    assert spec.invalid_for == {}
    assert spec.params["tools"] == tools


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("service_tier", "priority"),
        ("container", "c-1"),
        ("mcp_servers", [{"type": "url"}]),
        ("context_management", {}),
        ("cache_control", {"type": "ephemeral"}),
        ("output_config", {}),
        ("inference_geo", "us"),
        ("tool_choice", {"type": "none"}),
        ("top_k", 0),
        ("temperature", 0),
        ("temperature", 2),
        ("top_p", 1),
    ],
)
def test_other_known_params_pass_through(
    write: Callable[..., Path], read: Callable[..., Results], name: str, value: Any
) -> None:
    assert job(read(write(batch("a", **{name: value})))).params[name] == value


# ---------------------------------------------------------------- models


def test_no_model(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write({"custom_id": "a", "params": {"messages": USER_HI}}, {"id": "b", "prompt": "Hi"})
    first, second = read(path)
    assert str(first) == f"{path}:1: params.model: no model: name one in the line or pass --models"
    assert str(second) == f"{path}:2: model: no model: name one in the line or pass --models"


def test_unknown_model_lists_known_ones(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(batch("a", model="gpt-4o"), short("b", model="minimax-m3"), short("c", model=3))
    first, second, third = read(path)
    assert str(first).startswith(f"{path}:1: params.model: unknown model 'gpt-4o'; known models: ")
    assert "MiniMax-M3, MiniMax-M2.7" in str(first)
    assert "(did you mean 'MiniMax-M3'?)" in str(second)
    assert str(third) == f"{path}:3: model: model must be a string, got 3"


def test_models_option_routes_every_job(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write({"id": "a", "prompt": "Hi"}, short("b", model=M27), short("c", model="nope"))
    first, second, third = read(path, models=[M3, M27])
    assert isinstance(first, JobSpec)
    assert first.model is None
    assert isinstance(second, JobSpec)
    assert second.model == M27  # kept, though --models decides where it goes
    assert isinstance(third, LineError)
    assert third.field == "model"
    assert "unknown model 'nope'" in third.message


def test_models_option_with_unknown_model_fails_before_reading(
    write: Callable[..., Path], catalog: Catalog
) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'MiniMax-M9'"):
        read_jobs(write(short("a")), catalog, ReadOptions(models=["MiniMax-M9"]))


def test_images_and_videos_are_invalid_for_m2_models(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}
    video = {"type": "video", "source": {"type": "url", "url": "https://e.com/a.mp4"}}
    content = [image, {"type": "text", "text": "What is it?"}]
    path = write(
        batch("img", model=M27, messages=[{"role": "user", "content": content}]),
        batch("vid", messages=[{"role": "user", "content": [video]}]),
    )
    first, second = read(path)
    assert isinstance(first, JobSpec)
    assert first.invalid_for == {
        M27: "MiniMax-M2.7 does not accept image input (only MiniMax-M3 does)"
    }
    assert isinstance(second, JobSpec)
    assert second.invalid_for == {}
    forced = read(path, models=[M3, M27, "MiniMax-M2"])
    assert [dict(r.invalid_for) for r in forced if isinstance(r, JobSpec)] == [
        {
            M27: "MiniMax-M2.7 does not accept image input (only MiniMax-M3 does)",
            "MiniMax-M2": "MiniMax-M2 does not accept image input (only MiniMax-M3 does)",
        },
        {
            M27: "MiniMax-M2.7 does not accept video input (only MiniMax-M3 does)",
            "MiniMax-M2": "MiniMax-M2 does not accept video input (only MiniMax-M3 does)",
        },
    ]


def test_max_tokens_above_a_context_window(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(short("a", max_tokens=300_000), short("b", max_tokens=204_800), short("c"))
    first, second, third = read(path, models=[M3, M27])
    assert isinstance(first, JobSpec)
    assert first.invalid_for == {
        M27: "max_tokens 300000 is more than MiniMax-M2.7's context window of 204800 tokens"
    }
    assert isinstance(second, JobSpec)
    assert second.invalid_for == {}
    assert isinstance(third, JobSpec)
    assert third.invalid_for == {}
    huge = job(read(write(short("h", max_tokens=10**15))))
    assert "max_tokens 1000000000000000 is more than MiniMax-M3's" in huge.invalid_for[M3]


# ---------------------------------------------------------------- custom_id


def test_custom_id_rules(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(
        {"params": {"model": M3, "messages": USER_HI}},
        batch(""),
        {**short(), "id": 7},
        short("x" * 257),
        short("y" * 256),
        {**short("a"), "custom_id": "b"},
    )
    results = read(path)
    assert [str(r) for r in results if isinstance(r, LineError)] == [
        f'{path}:1: custom_id: no custom_id: every line needs a unique "custom_id" '
        '("id" also works in the shorthand format)',
        f'{path}:2: custom_id: custom_id must be a non-empty string, got "" (a string)',
        f"{path}:3: id: id must be a non-empty string, got 7",
        f"{path}:4: id: id must be at most 256 characters, got 257",
        f'{path}:6: id: give either "custom_id" or "id", not both',
    ]
    assert isinstance(results[4], JobSpec)


def test_duplicate_custom_id_names_the_first_line(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(batch("a"), short("b"), short("a"), batch("a"), batch("c"))
    results = read(path)
    dupes = [r for r in results if isinstance(r, LineError)]
    assert [str(r) for r in dupes] == [
        f"{path}:3: id: duplicate custom_id 'a': line 1 already uses it; "
        "every custom_id must be unique within the file",
        f"{path}:4: custom_id: duplicate custom_id 'a': line 1 already uses it; "
        "every custom_id must be unique within the file",
    ]
    assert [r.custom_id for r in dupes] == ["a", "a"]
    assert [r.custom_id for r in results if isinstance(r, JobSpec)] == ["a", "b", "c"]


def test_duplicates_found_after_the_index_grows(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    ids = [f"id-{i}" for i in range(3000)]
    path = write(*(short(i) for i in ids), short("id-0"), short("id-1499"), short("id-2999"))
    results = read(path)
    assert sum(isinstance(r, JobSpec) for r in results) == 3000
    assert [r.message.split(";")[0] for r in results[3000:] if isinstance(r, LineError)] == [
        "duplicate custom_id 'id-0': line 1 already uses it",
        "duplicate custom_id 'id-1499': line 1500 already uses it",
        "duplicate custom_id 'id-2999': line 3000 already uses it",
    ]


# ---------------------------------------------------------------- parameter rules


WRONG_PARAMS: list[tuple[str, Any, str, str]] = [
    ("max_tokens", "100", "max_tokens", 'max_tokens must be an integer >= 1, got "100" (a string)'),
    ("max_tokens", 0, "max_tokens", "max_tokens must be an integer >= 1, got 0"),
    ("max_tokens", -5, "max_tokens", "max_tokens must be an integer >= 1, got -5"),
    ("max_tokens", True, "max_tokens", "max_tokens must be an integer >= 1, got true (a boolean)"),
    ("max_tokens", 1.5, "max_tokens", "max_tokens must be an integer >= 1, got 1.5"),
    ("max_tokens", None, "max_tokens", "max_tokens must be an integer >= 1, got null"),
    ("temperature", 5, "temperature", "temperature must be a number in [0, 2], got 5"),
    ("temperature", -0.1, "temperature", "temperature must be a number in [0, 2], got -0.1"),
    ("temperature", "1", "temperature", 'must be a number in [0, 2], got "1" (a string)'),
    ("temperature", False, "temperature", "got false (a boolean)"),
    ("top_p", 1.5, "top_p", "top_p must be a number in [0, 1], got 1.5"),
    ("top_k", -1, "top_k", "top_k must be an integer >= 0, got -1"),
    ("top_k", 2.5, "top_k", "top_k must be an integer >= 0, got 2.5"),
    ("stop_sequences", "END", "stop_sequences", "must be a list of strings, got"),
    ("stop_sequences", ["a", 1], "stop_sequences[1]", "must be a string, got 1"),
    ("metadata", [], "metadata", "metadata must be an object, got a list"),
    ("stream", "yes", "stream", 'stream must be true or false, got "yes" (a string)'),
    ("system", 5, "system", "system must be a string or a list of text blocks, got 5"),
    ("system", [{"type": "image"}], "system[0]", "must be a text block"),
    ("system", [{"type": "text"}], "system[0].text", "must be a string, got null"),
    ("tools", {}, "tools", "tools must be a list of tool objects, got an object"),
    ("tools", ["t"], "tools[0]", 'must be an object with a name, got "t" (a string)'),
    ("tools", [{"input_schema": {}}], "tools[0].name", "must be a string, got null"),
    ("tools", [{"name": "t", "input_schema": []}], "tools[0].input_schema", "got a list"),
    ("tool_choice", {"type": "auto2"}, "tool_choice", 'type is "auto", "any", "tool" or "none"'),
    ("tool_choice", "auto", "tool_choice", 'got "auto" (a string)'),
    ("tool_choice", None, "tool_choice", "got null"),
    ("tool_choice", {"type": "any"}, "tool_choice", 'type "any" needs tools'),
    ("tool_choice", {"type": "tool", "name": "x"}, "tool_choice", 'type "tool" needs tools'),
    ("thinking", {"type": "on"}, "thinking", 'thinking must be an object {"type": "adaptive"}'),
    ("thinking", "adaptive", "thinking", 'got "adaptive" (a string)'),
    ("service_tier", 1, "service_tier", "service_tier must be a string, got 1"),
    ("container", 1, "container", "container must be a string or an object, got 1"),
    ("mcp_servers", {}, "mcp_servers", "mcp_servers must be a list of objects, got an object"),
    ("output_config", "x", "output_config", "must be an object"),
    ("messages", "Hi", "messages", "messages must be a non-empty list of {role, content} objects"),
    ("messages", [], "messages", "got an empty list"),
    ("messages", None, "messages", "messages is required"),
    ("messages", ["Hi"], "messages[0]", "must be an object with role and content"),
    ("messages", [{"role": "system", "content": "x"}], "messages[0].role", '"user" or'),
    ("messages", [{"content": "x"}], "messages[0].role", "got null"),
    ("messages", [{"role": "user", "content": ""}], "messages[0].content", "must not be empty"),
    ("messages", [{"role": "user", "content": " \n"}], "messages[0].content", "not be empty"),
    ("messages", [{"role": "user"}], "messages[0].content", "non-empty string or list of blocks"),
    ("messages", [{"role": "user", "content": []}], "messages[0].content", "got an empty list"),
    ("messages", [{"role": "user", "content": 5}], "messages[0].content", "got 5"),
]


def _content(block: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [block]}]


WRONG_BLOCKS: list[tuple[Any, str, str]] = [
    ({"type": "audio"}, "type", '"audio" (a string) is not a content block type; expected one of'),
    ("text", "type", "null is not a content block type"),
    ({"text": "x"}, "type", "null is not a content block type"),
    ({"type": "text"}, "text", "must be a string, got null"),
    ({"type": "text", "text": 1}, "text", "must be a string, got 1"),
    ({"type": "tool_use", "name": "t", "input": {}}, "id", "must be a string, got null"),
    ({"type": "tool_use", "id": "1", "input": {}}, "name", "must be a string"),
    ({"type": "tool_use", "id": "1", "name": "t", "input": "{}"}, "input", "must be an object"),
    ({"type": "tool_result", "content": "x"}, "tool_use_id", "must be a string, got null"),
    ({"type": "thinking", "signature": "s"}, "thinking", "must be a string, got null"),
]


@pytest.mark.parametrize("case", WRONG_PARAMS, ids=lambda case: f"{case[0]}={case[1]!r}")
@pytest.mark.parametrize("shape", ["batch", "shorthand"])
def test_wrong_parameter_values(
    write: Callable[..., Path],
    read: Callable[..., Results],
    shape: str,
    case: tuple[str, Any, str, str],
) -> None:
    name, value, field, message = case
    if shape == "batch":
        line, prefix = batch("bad", **{name: value}), "params."
    else:
        line, prefix = {**short("bad", **{name: value})}, ""
        if name == "messages":
            del line["prompt"]
    path = write(batch("good"), line)
    good, bad = read(path)
    assert isinstance(good, JobSpec)
    assert isinstance(bad, LineError)
    assert bad.field == f"{prefix}{field}"
    assert bad.custom_id == "bad"
    assert str(bad).startswith(f"{path}:2: {prefix}{field}: ")
    assert message in bad.message


@pytest.mark.parametrize(("block", "field", "message"), WRONG_BLOCKS)
def test_wrong_content_blocks(
    write: Callable[..., Path], read: Callable[..., Results], block: Any, field: str, message: str
) -> None:
    path = write(batch("a", messages=_content(block)))
    err = error(read(path))
    assert str(err).startswith(f"{path}:1: params.messages[1].content[0].{field}: ")
    assert message in err.message


def test_tool_choice_names_a_missing_tool(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    line = short("a", tools=[{"name": "y"}], tool_choice={"type": "tool", "name": "x"})
    path = write(line)
    assert str(error(read(path))) == (
        f'{path}:1: tool_choice.name: names "x" (a string), which is not in tools (y)'
    )


def test_unknown_parameters_suggest_the_nearest(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(
        batch("a", temprature=1),
        short("b", max_token=5),
        short("c", colour="red"),
        {**batch("d"), "model": M3},
        {**batch("e"), "custom-id": "x"},
    )
    first, second, third, fourth, fifth = read(path)
    assert str(first).startswith(
        f"{path}:1: params.temprature: unknown parameter 'temprature' "
        "(did you mean 'temperature'?); known Messages parameters: model, messages, "
    )
    assert str(second).startswith(
        f"{path}:2: max_token: unknown parameter 'max_token' (did you mean 'max_tokens'?)"
    )
    assert str(third).startswith(f"{path}:3: colour: unknown parameter 'colour'; known")
    assert str(fourth).startswith(f"{path}:4: model: unknown field 'model' in a batch line; ")
    assert "did you mean 'custom_id'?" in str(fifth)


def test_params_must_be_an_object(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write({"custom_id": "a", "params": [1]}, {"custom_id": "b", "params": None})
    first, second = read(path)
    assert str(first) == (
        f"{path}:1: params: params must be an object of Messages parameters, got a list"
    )
    assert second.field == "params"


def test_shorthand_prompt_rules(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(
        {"id": "a", "model": M3},
        short("b", prompt=""),
        short("c", prompt=["Hi"]),
        short("d", messages=USER_HI),
    )
    assert [str(r) for r in read(path)] == [
        f'{path}:1: prompt: no prompt: give "prompt" (a string) or "messages"',
        f'{path}:2: prompt: prompt must be a non-empty string, got "" (a string)',
        f"{path}:3: prompt: prompt must be a non-empty string, got a list",
        f'{path}:4: prompt: give either "prompt" or "messages", not both',
    ]


# ---------------------------------------------------------------- hostile lines


def test_invalid_json_names_the_column(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(short("a"), '{"id": "b", "prompt": "x",}', short("c"))
    first, second, third = read(path)
    assert isinstance(first, JobSpec)
    assert isinstance(third, JobSpec)
    assert isinstance(second, LineError)
    assert second.field is None
    assert second.custom_id is None
    assert str(second).startswith(f"{path}:2: invalid JSON at column 26: trailing comma")
    assert "cut short" not in str(second)


def test_lines_that_are_not_objects(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    path = write(short("a"), "[1, 2]", '"text"', "42", "null")
    messages = [str(r) for r in read(path)[1:]]
    assert messages[0].startswith(f"{path}:2: the line is a list, not a JSON object; ")
    assert messages[1].startswith(f'{path}:3: the line is "text" (a string), not a JSON object')
    assert messages[2].startswith(f"{path}:4: the line is 42, not a JSON object")
    assert messages[3].startswith(f"{path}:5: the line is null, not a JSON object")


def test_truncated_last_line(tmp_path: Path, read: Callable[..., Results]) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(orjson.dumps(short("a")) + b'\n{"id": "b", "model": "MiniMax-M3", "pro')
    first, second = read(path)
    assert isinstance(first, JobSpec)
    assert str(second).startswith(f"{path}:2: invalid JSON at column ")
    assert "the last line has no newline: was the file cut short?" in str(second)


def test_last_line_without_newline_is_fine_when_complete(
    tmp_path: Path, read: Callable[..., Results]
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(orjson.dumps(short("a")) + b"\n" + orjson.dumps(short("b")))
    assert [r.custom_id for r in read(path) if isinstance(r, JobSpec)] == ["a", "b"]


def test_utf8_bom_on_the_first_line_only(
    write: Callable[..., Path], read: Callable[..., Results]
) -> None:
    bom = b"\xef\xbb\xbf"
    path = write(bom + _encode(short("a")), bom + _encode(short("b")))
    first, second = read(path)
    assert isinstance(first, JobSpec)
    assert str(second).startswith(f"{path}:2: invalid JSON at column 1: ")


def test_crlf_line_endings(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(short("a"), "", batch("b"), end=b"\r\n")
    results = read(path)
    assert [(r.line_no, r.custom_id) for r in results if isinstance(r, JobSpec)] == [
        (1, "a"),
        (3, "b"),
    ]
    assert job(read(write(short("p", prompt="x\r\ny"), end=b"\r\n"))).params["messages"] == [
        {"role": "user", "content": "x\r\ny"}
    ]


def test_bytes_that_are_not_utf8(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(short("a"), b'{"id": "b", "model": "MiniMax-M3", "prompt": "caf\xe9"}', short("c"))
    first, second, third = read(path)
    assert isinstance(first, JobSpec)
    assert isinstance(third, JobSpec)
    assert str(second) == (
        f"{path}:2: the line is not UTF-8 text (byte 0xe9 at byte 50); save the file as UTF-8"
    )


def test_a_10_mb_line(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    prompt = "word " * 2_000_000 + "é"
    path = write(short("big", prompt=prompt), short("small"))
    big, small = read(path)
    assert isinstance(big, JobSpec)
    assert big.params["messages"][0]["content"] == prompt
    assert isinstance(small, JobSpec)
    assert small.line_no == 2


def test_a_10_mb_broken_line(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(short("a"), '{"id": "b", "prompt": "' + "x" * 10_000_000)
    assert str(read(path)[1]).startswith(f"{path}:2: invalid JSON at column ")


def test_numbers_beyond_64_bits(write: Callable[..., Path], read: Callable[..., Results]) -> None:
    path = write(
        '{"id": "a", "model": "MiniMax-M3", "prompt": "x", "max_tokens": 1' + "0" * 30 + "}"
    )
    err = error(read(path))
    assert str(err).startswith(f"{path}:1: max_tokens: max_tokens must be an integer >= 1, got ")


# ---------------------------------------------------------------- whole files


def test_missing_file(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(JobFileError, match=r"nope\.jsonl: no such file"):
        check_file(path)
    with pytest.raises(JobFileError, match="no such file"):
        read_jobs(path, catalog, ReadOptions())


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="is a directory, not a job file") as info:
        check_file(tmp_path)
    assert info.value.path == str(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(write: Callable[..., Path]) -> None:
    path = write(short("a"))
    path.chmod(0)
    try:
        with pytest.raises(JobFileError, match="cannot read the file: Permission denied"):
            check_file(path)
    finally:
        path.chmod(0o600)


def test_path_through_a_file(write: Callable[..., Path]) -> None:
    path = write(short("a")) / "jobs.jsonl"
    with pytest.raises(JobFileError, match="cannot read the file: Not a directory"):
        check_file(path)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n\t\n", b"\xef\xbb\xbf\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(JobFileError, match=r"the file is empty \(or only whitespace\); .*JSONL"):
        check_file(path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"{\x00\x01\x02" + os.urandom(100))
    with pytest.raises(JobFileError, match=r"binary \(it contains NUL bytes\)"):
        check_file(path)


def test_utf16_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(orjson.dumps(short("a")).decode() + "\n", encoding="utf-16")
    with pytest.raises(JobFileError, match="UTF-16 text; save it as UTF-8"):
        check_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"id": "a", "prompt": "x"}]\n', "a JSON array, not JSON Lines"),
        (b'[\n  {"id": "a", "prompt": "x"}\n]\n', "a JSON array, not JSON Lines"),
        (b'{\n  "id": "a",\n  "prompt": "x"\n}\n', "one pretty-printed JSON document"),
        (b'{"id": "a",\n  "prompt": "x"\n}\n', "one pretty-printed JSON document"),
        (b"custom_id,prompt\na,Hello\n", "the first line is not a JSON object"),
        (b'"just a string"\n', "the first line is not a JSON object"),
    ],
)
def test_not_json_lines(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "jobs.json"
    path.write_bytes(content)
    with pytest.raises(JobFileError, match=message) as info:
        check_file(path)
    # The message teaches the format.
    assert '{"custom_id": "q1", "params": {"model": "MiniMax-M3"' in str(info.value)
    assert str(info.value).startswith(str(path))


def test_first_line_broken_but_jsonl(tmp_path: Path, read: Callable[..., Results]) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": \n' + orjson.dumps(short("b")) + b"\n")
    first, second = read(path)  # a broken line, not a pretty-printed file
    assert isinstance(first, LineError)
    assert isinstance(second, JobSpec)


def test_read_jobs_is_lazy(write: Callable[..., Path], catalog: Catalog) -> None:
    path = write(*(short(f"j{i}") for i in range(5)))
    results = read_jobs(path, catalog, ReadOptions())
    assert next(results).custom_id == "j0"
    assert sum(1 for _ in results) == 4


# ---------------------------------------------------------------- the corpus


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("array.json", "a JSON array"),
        ("pretty.json", "pretty-printed"),
        ("table.csv", "not a JSON object"),
        ("empty.jsonl", "empty"),
        ("whitespace.jsonl", "empty"),
    ],
)
def test_corpus_unusable_files(name: str, message: str) -> None:
    with pytest.raises(JobFileError, match=message):
        check_file(CORPUS / name)


def test_corpus_broken_lines(read: Callable[..., Results]) -> None:
    path = CORPUS / "broken_lines.jsonl"
    expected = json.loads((CORPUS / "broken_lines.expected.json").read_text())
    expected.pop("_comment")
    results = read(path)
    errors = {r.line_no: r for r in results if isinstance(r, LineError)}
    assert sorted(errors) == sorted(int(n) for n in expected)
    for line_no, (field, fragment) in expected.items():
        err = errors[int(line_no)]
        assert err.field == field
        prefix = f"{path}:{line_no}: {field}: " if field else f"{path}:{line_no}: "
        assert str(err).startswith(prefix)
        assert fragment in err.message, str(err)
    image = next(r for r in results if isinstance(r, JobSpec) and r.custom_id == "ok-image")
    assert M27 in image.invalid_for


# ---------------------------------------------------------------- reporting


def test_line_error_str() -> None:
    err = LineError(path="a.jsonl", line_no=3, field="custom_id", message="m", custom_id=None)
    assert str(err) == "a.jsonl:3: custom_id: m"
    syntax = LineError(path="a.jsonl", line_no=4, field=None, message="bad", custom_id=None)
    assert str(syntax) == "a.jsonl:4: bad"


def test_format_line_errors() -> None:
    errors = [
        LineError(path="f", line_no=n, field="x", message=f"m{n}", custom_id=None)
        for n in range(1, 26)
    ]
    text = format_line_errors(errors)
    assert text.splitlines()[0] == "f:1: x: m1"
    assert text.splitlines()[19] == "f:20: x: m20"
    assert text.splitlines()[-1] == "... and 5 more"
    assert len(text.splitlines()) == 21
    assert format_line_errors(errors[:3], limit=3) == "f:1: x: m1\nf:2: x: m2\nf:3: x: m3"
    assert format_line_errors([]) == ""


# ---------------------------------------------------------------- properties

_text = st.text(min_size=1, max_size=40).filter(lambda s: bool(s.strip()))
_job = st.fixed_dictionaries(
    {"custom_id": st.text(min_size=1, max_size=256), "prompt": _text},
    optional={
        "system": st.text(max_size=20),
        "max_tokens": st.integers(1, 204_800),
        "temperature": st.floats(0, 2),
        "model": st.sampled_from([M3, M27]),
    },
)
_jobs = st.lists(_job, max_size=15, unique_by=lambda job: job["custom_id"])
_gap = st.sampled_from(["", " ", "\t", " \t "])
_layout = st.tuples(
    st.sampled_from(["batch", "short-id", "short-custom_id"]),
    _gap,
    _gap,
    st.sampled_from(["\n", "\r\n"]),
    st.integers(0, 2),
)


def _as_line(job: dict[str, Any], shape: str) -> dict[str, Any]:
    fields = {k: v for k, v in job.items() if k not in ("custom_id", "prompt")}
    if shape == "batch":
        params = {**fields, "messages": [{"role": "user", "content": job["prompt"]}]}
        return {"custom_id": job["custom_id"], "params": params}
    key = "id" if shape == "short-id" else "custom_id"
    return {key: job["custom_id"], "prompt": job["prompt"], **fields}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), jobs=_jobs)
def test_valid_jobs_round_trip(
    tmp_path: Path, catalog: Catalog, data: st.DataObject, jobs: list[dict[str, Any]]
) -> None:
    chunks: list[str] = []
    expected: list[tuple[int, str, dict[str, Any]]] = []
    line_no = 0
    for item in jobs:
        shape, before, after, end, blanks = data.draw(_layout)
        chunks.append(end * blanks)
        line_no += blanks + 1
        line = _as_line(item, shape)
        chunks.append(before + orjson.dumps(line).decode() + after + end)
        expected.append((line_no, item["custom_id"], item))
    path = tmp_path / "prop.jsonl"
    path.write_bytes("".join(chunks).encode())
    if not jobs:
        return
    results = list(read_jobs(path, catalog, ReadOptions(models=[M3])))
    assert all(isinstance(r, JobSpec) for r in results), [str(r) for r in results]
    assert [(r.line_no, r.custom_id) for r in results] == [(n, c) for n, c, _ in expected]
    for result, (_, _, item) in zip(results, expected, strict=True):
        assert isinstance(result, JobSpec)
        assert result.params["messages"] == [{"role": "user", "content": item["prompt"]}]
        assert result.params["max_tokens"] == item.get("max_tokens", 1024)
        assert result.model == item.get("model")
        assert result.params.get("temperature") == item.get("temperature")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=3000))
def test_garbage_never_crashes(tmp_path: Path, catalog: Catalog, garbage: bytes) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(garbage)
    try:
        results = list(read_jobs(path, catalog, ReadOptions()))
    except JobFileError:
        return
    assert all(isinstance(r, JobSpec | LineError) for r in results)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# NUL bytes in the first 8 KB make the whole file "binary": kept out to reach the line parser.
@given(lines=st.lists(st.binary(max_size=200).map(lambda b: b.translate(None, b"\n\x00"))))
def test_garbage_lines_after_a_good_one(
    tmp_path: Path, catalog: Catalog, lines: list[bytes]
) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(short("first")), *lines]))
    results = list(read_jobs(path, catalog, ReadOptions()))
    assert isinstance(results[0], JobSpec)
    nonblank = [n for n, line in enumerate(lines, 2) if line.strip() and not line.isspace()]
    assert [r.line_no for r in results[1:]] == nonblank
    for result in results[1:]:
        assert isinstance(result, JobSpec | LineError)
        if isinstance(result, LineError):
            assert str(result).startswith(f"{path}:{result.line_no}: ")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.dictionaries(
        st.sampled_from(["custom_id", "id", "params", "prompt", "model", "max_tokens", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=8), children, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_any_json_object_gives_a_result(
    tmp_path: Path, catalog: Catalog, fields: dict[str, Any]
) -> None:
    path = tmp_path / "objects.jsonl"
    path.write_text(json.dumps(short("first")) + "\n" + json.dumps(fields) + "\n")
    results = list(read_jobs(path, catalog, ReadOptions()))
    assert len(results) == 2
    assert isinstance(results[1], JobSpec | LineError)


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_200k_lines_stream_in_flat_memory(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "big.jsonl"
    count = 200_000
    with path.open("wb") as out:
        for i in range(count):
            line = batch(f"b{i}", max_tokens=256) if i % 2 else short(f"s{i}", prompt=f"Q{i}?")
            out.write(orjson.dumps(line) + b"\n")
    tracemalloc.start()
    try:
        seen = sum(1 for r in read_jobs(path, catalog, ReadOptions()) if isinstance(r, JobSpec))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    # Only 64-bit custom_id hashes and line numbers are kept (at most 48 bytes per id while
    # the index grows); keeping the jobs themselves would cost well over 1 KB per line.
    assert peak / count < 100
