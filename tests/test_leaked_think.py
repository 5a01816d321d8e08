"""Reasoning leaked into the text as ``<think>...</think>`` (C10), empty replies (C11) and streams
that only ping (C9): the assembler on bytes, then the runner, grading, exports and the store over
real HTTP against tests/thinkserver.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from rich.console import Console

from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.api.failures import CallFailure, FailureKind
from batchrun.api.stream import StreamAssembler, block_texts, split_answer
from batchrun.cli.display import summary_of, summary_table
from batchrun.export import flatten, result_records
from batchrun.grading.apply import grade_batch
from batchrun.grading.judge import judge_prompt, question_of
from batchrun.status import RequestStatus
from tests.runharness import Run
from tests.test_stream_parser import sse
from tests.thinkserver import (
    CUT,
    EMPTY,
    GAP,
    LEAKED,
    PING,
    message_start,
    run_think_jobs,
    text_delta,
    text_reply,
    text_start,
    think_api,
)


def fed(*parts: bytes) -> StreamAssembler:
    """An assembler fed each part as its own read, part n arriving at n seconds."""
    assembler = StreamAssembler(0.0)
    for second, part in enumerate(parts, 1):
        assembler.feed(part, float(second))
    return assembler


def thinking_block(text: str) -> list[bytes]:
    """A real thinking block at index 0 (the text block then goes at index 1)."""
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}}
    delta = {"type": "thinking_delta", "thinking": text}
    return [
        sse("content_block_start", start)
        + sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]


def at_index(part: bytes, index: int) -> bytes:
    return part.replace(b'"index":0', b'"index":' + str(index).encode())


# --------------------------------------------------------------------------- the assembler


def test_leaked_reasoning_is_thinking_and_the_text_starts_after_the_closing_tag() -> None:
    # message_start+block at 1 s, then <think> at 2 s, ... "42" at 6 s, the end at 7 s
    assembler = fed(*text_reply(LEAKED))
    timings = assembler.timings
    assert (timings.first_token, timings.first_thinking, timings.first_text) == (2.0, 2.0, 6.0)
    message = assembler.message()
    raw = "<think>six times seven is 42</think>\n\n42"
    assert message["content"] == [{"type": "text", "text": raw}]  # kept as received
    answer = split_answer(message)
    assert (answer.text, answer.thinking) == ("42", "six times seven is 42")
    assert answer.flags == ("think_leaked",)
    assert answer.flag_text == "think_leaked"


@pytest.mark.parametrize(
    "pieces",
    [
        ("<th", "ink>six times seven", " is 42</thi", "nk>", "\n", "\n42"),
        ("  \n<", "think>six times seven is 42<", "/think>\n\n", "42"),
        ("<think>six times seven is 42</think>", "\n\n42"),
    ],
)
def test_tags_split_over_deltas_give_the_same_answer_and_timings(pieces: tuple[str, ...]) -> None:
    assembler = fed(*text_reply(pieces))
    last = len(pieces) + 1  # the read that carried "42"
    assert (assembler.timings.first_thinking, assembler.timings.first_text) == (2.0, float(last))
    answer = split_answer(assembler.message())
    assert (answer.text, answer.thinking, answer.flags) == (
        "42",
        "six times seven is 42",
        ("think_leaked",),
    )


def test_a_stream_split_anywhere_still_finds_the_visible_text() -> None:
    whole = b"".join(text_reply(LEAKED))
    for cut in range(1, len(whole), 5):
        assembler = StreamAssembler(0.0)
        assembler.feed(whole[:cut], 1.0)
        assembler.feed(whole[cut:], 2.0)
        shown = text_delta("42") in whole[:cut]  # the event of "42" came whole in the first read
        assert assembler.timings.first_text == (1.0 if shown else 2.0), cut
        assert split_answer(assembler.message()).text == "42"


def test_reasoning_cut_before_its_closing_tag_is_all_thinking() -> None:
    assembler = fed(*text_reply(CUT, "max_tokens"))
    assert assembler.timings.first_thinking == 2.0
    assert assembler.timings.first_text is None  # no visible text ever came
    answer = split_answer(assembler.message())
    assert answer.text == ""
    assert answer.thinking == "first I will think about what six times seven"
    assert answer.flags == ("think_leaked",)


def test_real_thinking_then_leaked_reasoning_keeps_both_in_order() -> None:
    real = thinking_block("real thoughts")
    text = [at_index(part, 1) for part in text_reply(("<think>", "more", "</think>", "answer"))]
    # thinking at 2 s, its end at 3 s, the text block at 4 s, <think> at 5 s, "answer" at 8 s
    assembler = fed(message_start(), *real, at_index(text_start(), 1), *text[1:])
    timings = assembler.timings
    assert timings.first_thinking == 2.0  # the real thinking, not the leaked one
    assert timings.first_text == 8.0  # "answer"
    answer = split_answer(assembler.message())
    assert (answer.text, answer.thinking) == ("answer", "real thoughts\n\nmore")


def test_plain_replies_keep_their_timings_and_are_not_flagged() -> None:
    cases = {
        ("\n\n", "Hello"): ("\n\nHello", 2.0),  # a blank start is text from its first piece
        ("<b>bold", "</b>"): ("<b>bold</b>", 2.0),
        ("<thi",): ("<thi", 2.0),  # settles only at the end: still text from its first piece
        ("I think <think> is a tag",): ("I think <think> is a tag", 2.0),
    }
    for pieces, (text, first_text) in cases.items():
        assembler = fed(*text_reply(pieces))
        assert assembler.timings.first_text == first_text, pieces
        answer = split_answer(assembler.message())
        assert (answer.text, answer.flags) == (text, ()), pieces


def test_an_empty_reply_is_a_message_with_no_content_and_flagged() -> None:
    assembler = fed(*EMPTY)
    message = assembler.message()
    assert message["content"] == []
    assert message["usage"]["output_tokens"] == 1
    assert assembler.timings.first_text is None
    assert split_answer(message).flags == ("empty_reply",)
    null = {"role": "assistant", "content": None, "usage": {"output_tokens": 1}}  # non-streamed
    assert block_texts(null) == ("", "")
    assert (split_answer(null).text, split_answer(null).flags) == ("", ("empty_reply",))


def test_only_events_other_than_ping_count_as_events() -> None:
    assembler = fed(message_start() + text_start())
    seen = assembler.events
    assembler.feed(PING * 3, 2.0)
    assembler.feed(b": a comment\n\n", 3.0)
    assert assembler.events == seen
    assembler.feed(text_delta("x")[:10], 4.0)  # half an event is not one yet
    assert assembler.events == seen
    assembler.feed(text_delta("x")[10:] + PING, 5.0)
    assert assembler.events == seen + 1


# --------------------------------------------------------------------------- over HTTP


@pytest.mark.anyio
async def test_a_stream_that_only_pings_is_stalled() -> None:
    with think_api() as served:
        client = ApiClient(
            Endpoint(base_url=served.base_url, api_key="k", simulated=True),
            Deadlines(idle=0.4, total=20),
            4,
        )
        params = {"max_tokens": 5, "messages": [{"role": "user", "content": "pings"}]}
        try:
            with pytest.raises(CallFailure) as caught:
                await client.stream_message("MiniMax-M3", params)
        finally:
            await client.aclose()
    assert caught.value.kind is FailureKind.STALLED  # pings came every GAP s, far under idle


@pytest.fixture(scope="module")
def think_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """JOBS run on MiniMax-M3 against the test API: leaked, cut, empty and plain replies."""
    with think_api() as served:
        run = run_think_jobs(tmp_path_factory.mktemp("think"), served)
    yield run
    run.store.close()


def test_the_runner_stores_the_visible_answer_thinking_flags_and_timings(think_run: Run) -> None:
    results = {row["custom_id"]: row for row in think_run.results()}
    assert {row["status"] for row in think_run.requests()} == {RequestStatus.SUCCEEDED}

    leak = results["leak"]
    assert (leak["text"], leak["thinking"], leak["flags"]) == (
        "42",
        "six times seven is 42",
        "think_leaked",
    )
    assert leak["message"]["content"][0]["text"] == "".join(LEAKED)  # the raw text is kept
    # "42" came 4 pieces (each GAP apart) after <think>: TTFT (text) is not the <think> piece
    assert leak["first_text_s"] - leak["first_thinking_s"] >= 3 * GAP
    assert leak["first_token_s"] == leak["first_thinking_s"]

    cut = results["cut"]
    assert (cut["text"], cut["flags"], cut["first_text_s"]) == ("", "think_leaked", None)
    assert cut["stop_reason"] == "max_tokens"

    empty = results["empty"]
    assert (empty["text"], empty["thinking"], empty["flags"]) == ("", "", "empty_reply")
    assert (empty["output_tokens"], empty["message"]["content"]) == (1, [])

    plain = results["plain"]
    assert (plain["text"], plain["flags"]) == ("The answer is 42.", None)
    assert plain["first_text_s"] == plain["first_token_s"]


def test_grading_reads_the_visible_answer_and_fails_an_empty_one_cleanly(think_run: Run) -> None:
    batch_id = think_run.plan.batch.id
    assert grade_batch(think_run.store, batch_id).graded == 3
    grades = {g["custom_id"]: g for g in think_run.store.grade_rows(batch_id)}
    assert grades["leak"]["passed"] is True  # <think>six times seven is 42</think>42 equals 42
    assert (grades["cut"]["passed"], grades["empty"]["passed"]) == (False, False)
    assert grades["empty"]["error"] is None
    # the judge is asked about the visible answer too
    leak = next(r for r in think_run.store.grading_rows(batch_id) if r["custom_id"] == "leak")
    prompt = judge_prompt("Is it right?", question_of(leak["params"]), leak["text"])
    assert "six times seven is 42" not in prompt
    assert "<think>" not in prompt


def test_exports_carry_the_visible_answer_the_raw_message_and_the_flags(think_run: Run) -> None:
    records = {r["custom_id"]: r for r in result_records(think_run.store, think_run.plan.batch)}
    leaked = records["leak"]
    assert leaked["answer"] == {"text": "42", "thinking": "six times seven is 42"}
    assert leaked["result"]["message"]["content"][0]["text"].startswith("<think>")
    assert leaked["metrics"]["flags"] == ["think_leaked"]
    assert records["plain"]["metrics"]["flags"] == []
    flat = {name: flatten(record) for name, record in records.items()}
    assert (flat["leak"]["text"], flat["leak"]["thinking"]) == ("42", "six times seven is 42")
    assert (flat["leak"]["flags"], flat["plain"]["flags"]) == ("think_leaked", None)
    assert (flat["empty"]["text"], flat["empty"]["flags"]) == ("", "empty_reply")
    assert orjson.dumps(list(records.values()))  # every record is plain JSON


def test_status_and_analytics_count_the_flagged_answers(think_run: Run) -> None:
    summary = summary_of(think_run.store, think_run.plan.batch).row(0, named=True)
    assert (summary["think_leaked"], summary["empty_replies"]) == (2, 1)
    console = Console(width=200, record=True)
    console.print(summary_table(summary_of(think_run.store, think_run.plan.batch), "t"))
    assert "2 think leaked, 1 empty" in console.export_text()
    clean = summary_of(think_run.store, think_run.plan.batch).with_columns(
        think_leaked=pl.lit(0), empty_replies=pl.lit(0)
    )
    console.print(summary_table(clean, "clean"))
    assert "flagged" not in console.export_text().split("clean")[1]  # shown only when non-zero


def test_a_stream_that_only_pings_is_retried_by_the_runner(tmp_path: Path) -> None:
    with think_api() as served:
        run = run_think_jobs(tmp_path, served, [{"custom_id": "p", "prompt": "ping-once"}])
    [result] = run.results()
    assert result["text"] == "The answer is 42."
    outcomes = [a["outcome"] for a in sorted(run.attempts(), key=lambda a: a["number"])]
    assert outcomes == ["retry", "ok"]
    run.store.close()
