"""Expected prompt-cache reads: CacheView, the estimate's cost with cache, the runner's figure.

Figures are checked against values worked out by hand from the rule batchrun states: a prefix's
tokens are the request's input tokens x the prefix's share of the prompt's serialized bytes.
The run tests use the real simulator (passive caching on) through the real CLI.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from rich.console import Console

from batchrun.analytics import cache_trust_note, estimate_vs_actual
from batchrun.api.client import ApiClient
from batchrun.api.endpoint import Deadlines
from batchrun.catalog import ModelInfo, load_catalog
from batchrun.cli.display import print_estimate
from batchrun.exceptions import CatalogError
from batchrun.jobs import ReadOptions, read_jobs
from batchrun.plan.cache import CacheView, prompt_prefixes
from batchrun.plan.estimate import Estimate, estimate, planned_from_file
from batchrun.plan.precheck import TokenCounter
from batchrun.pricing import usd
from batchrun.sim import RunningSimulator
from batchrun.sim.loop import run_fast
from batchrun.sim.tokens import count_request
from batchrun.store import Store, database_url
from batchrun.workspace import metrics_frame
from tests.helpers import API_KEY, batchrun, make_client
from tests.runharness import endpoint_for, write_jobs

M27, M3 = "MiniMax-M2.7", "MiniMax-M3"
ROOT = Path(__file__).parent.parent
TEXT_BLOCK = 25  # bytes of {"text":"","type":"text"}: a string of N characters serializes to N+25
ROLE = len(b'{"role":"user"}')  # 15


def model(**changes: Any) -> ModelInfo:
    """MiniMax-M2.7 from the built-in catalog, with ``changes``."""
    return dataclasses.replace(load_catalog().get(M27), **changes)


def body(system: str, question: str, **extra: Any) -> dict[str, Any]:
    return {"system": system, "messages": [{"role": "user", "content": question}], **extra}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# A system prompt of 1,000 serialized bytes and a question of 110: 1,125 bytes in all, so at
# 2,250 input tokens each byte is 2 tokens and the prefixes are 2,000 / 2,030 / 2,250 tokens.
SYSTEM = "s" * (1000 - TEXT_BLOCK)
QUESTION_A, QUESTION_B = "a" * (110 - TEXT_BLOCK), "b" * (110 - TEXT_BLOCK)
TOKENS = 2250


# --- CacheView ------------------------------------------------------------------------------------


def test_prefixes_end_at_item_boundaries_with_tokens_by_byte_share() -> None:
    assert [t for t, _ in prompt_prefixes(body(SYSTEM, QUESTION_A), TOKENS, 512)] == [
        2000,
        2030,
        2250,
    ]
    # Shorter than the minimum: left out (the role item's prefix is 2,030 tokens).
    assert [t for t, _ in prompt_prefixes(body(SYSTEM, QUESTION_A), TOKENS, 2001)] == [2030, 2250]
    # A plain string system and the same text as a block (with a cache_control mark) are one prefix.
    marked = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    plain = prompt_prefixes(body(SYSTEM, QUESTION_A), TOKENS, 512)
    assert prompt_prefixes(body(marked, QUESTION_A), TOKENS, 512) == plain  # type: ignore[arg-type]


def test_a_later_request_reads_the_longest_shared_prefix() -> None:
    view, info = CacheView(clock=Clock()), model()
    assert view.expect(info, body(SYSTEM, QUESTION_A), TOKENS) == 0  # nothing cached yet
    # Same system and role, another question: system + role item = 1,015 of 1,125 bytes.
    assert view.expect(info, body(SYSTEM, QUESTION_B), TOKENS) == TOKENS * 1015 // 1125 == 2030
    # The same prompt again: all of it.
    assert view.expect(info, body(SYSTEM, QUESTION_A), TOKENS) == TOKENS
    # Input counted differently (another tokenizer): the same share of it.
    assert view.expect(info, body(SYSTEM, "c" * 85), 1125) == 1125 * 1015 // 1125
    # Tools come first: a request with a tool in front shares no prefix with the others.
    tool = {"name": "lookup", "description": "d", "input_schema": {"type": "object"}}
    assert view.expect(info, body(SYSTEM, QUESTION_B, tools=[tool]), TOKENS) == 0
    # An assistant turn first: only the system prompt is shared (1,000 of its 1,125 bytes).
    assistant = {"system": SYSTEM, "messages": [{"role": "assistant", "content": QUESTION_A}]}
    assert view.expect(info, assistant, 2255) == 2255 * 1000 // 1130
    # Another model has a cache of its own.
    assert view.expect(model(name=M3), body(SYSTEM, QUESTION_B), TOKENS) == 0


def test_the_minimum_applies_to_what_is_kept_and_read() -> None:
    view = CacheView(clock=Clock())
    high = model(cache_min_tokens=2001)  # the system prefix (2,000 tokens) is too short to cache
    view.expect(high, body(SYSTEM, QUESTION_A), TOKENS)
    assistant = {"system": SYSTEM, "messages": [{"role": "assistant", "content": QUESTION_A}]}
    assert view.expect(high, assistant, 2255) == 0  # shares only the 2,000-token system prefix
    assert view.expect(high, body(SYSTEM, QUESTION_B), TOKENS) == 2030
    # Below the model's minimum nothing is expected, and nothing is kept.
    short = CacheView(clock=Clock())
    assert short.expect(model(), body("x", "y"), 511) == 0
    assert short.expect(model(), body("x", "y"), 511) == 0
    assert short.entries(M27) == 0
    assert short.expect(model(), body("x", "y"), 512) == 0
    assert short.entries(M27) == 1  # only the whole prompt reaches 512 tokens
    assert short.expect(model(), body("x", "y"), 512) == 512
    # A model without cache_min_tokens expects no cache reads at all.
    none = CacheView(clock=Clock())
    for _ in range(2):
        assert none.expect(model(cache_min_tokens=None), body(SYSTEM, QUESTION_A), TOKENS) == 0
    assert none.entries(M27) == 0


class Unserializable:
    """orjson cannot serialize this: a prompt holding it fails if it is ever serialized."""


def test_a_prompt_below_the_minimum_is_neither_serialized_nor_hashed() -> None:
    view = CacheView(clock=Clock())
    params = body(SYSTEM, [{"type": "text", "text": Unserializable()}])  # type: ignore[arg-type]
    assert view.expect(model(), params, 511) == 0
    with pytest.raises(TypeError):  # above the minimum it is serialized (and would be hashed)
        view.expect(model(), params, 512)


def test_entries_live_the_models_ttl_from_their_last_use() -> None:
    clock = Clock()
    view, info = CacheView(clock=clock), model(cache_ttl_seconds=300)
    view.expect(info, body(SYSTEM, QUESTION_A), TOKENS)
    clock.now = 299.0
    assert view.expect(info, body(SYSTEM, QUESTION_B), TOKENS) == 2030  # and refreshed
    clock.now = 598.0
    assert view.expect(info, body(SYSTEM, "c" * 85), TOKENS) == 2030
    clock.now = 898.0  # 300 s after the last use: gone
    assert view.expect(info, body(SYSTEM, "d" * 85), TOKENS) == 0
    # Without expiry (the estimate's view) an entry outlives any pause.
    lasting = CacheView.without_expiry()
    lasting.expect(info, body(SYSTEM, QUESTION_A), TOKENS)
    assert lasting.expect(info, body(SYSTEM, QUESTION_B), TOKENS) == 2030


def test_each_model_keeps_at_most_max_entries_least_recently_used_first() -> None:
    view, info = CacheView(clock=Clock(), max_entries=3), model()
    view.expect(info, body(SYSTEM, QUESTION_A), TOKENS)  # 3 prefixes
    view.expect(info, body("t" * 975, QUESTION_A), TOKENS)  # 3 more: the first 3 go
    assert view.entries(M27) == 3
    assert view.expect(info, body(SYSTEM, QUESTION_B), TOKENS) == 0
    roomy = CacheView(clock=Clock(), max_entries=6)
    roomy.expect(info, body(SYSTEM, QUESTION_A), TOKENS)
    roomy.expect(info, body("t" * 975, QUESTION_A), TOKENS)
    assert roomy.expect(info, body(SYSTEM, QUESTION_B), TOKENS) == 2030
    with pytest.raises(ValueError, match="max_entries"):
        CacheView(max_entries=0)


def test_the_catalog_gives_each_model_its_cache_minimum_and_lifetime(tmp_path: Path) -> None:
    catalog = load_catalog()
    assert {(m.cache_min_tokens, m.cache_ttl_seconds) for m in catalog} == {(512, 300)}
    override = tmp_path / "mine.toml"
    override.write_text(
        f'[models."{M27}"]\ncache_min_tokens = 1024\ncache_ttl_seconds = 60\n'
        f'[models."{M3}"]\ncache_min_tokens = 0\n'
    )
    mine = load_catalog(override)
    assert (mine.get(M27).cache_min_tokens, mine.get(M27).cache_ttl_seconds) == (1024, 60)
    assert mine.get(M3).cache_min_tokens is None  # 0: expect no cache reads
    for bad in ("cache_min_tokens = -1", 'cache_min_tokens = "512"', "cache_ttl_seconds = 0"):
        override.write_text(f'[models."{M27}"]\n{bad}\n')
        with pytest.raises(CatalogError, match="cache_"):
            load_catalog(override)


# --- the estimate ---------------------------------------------------------------------------------


def cache_demo_lines(count: int) -> list[dict[str, Any]]:
    lines = (ROOT / "jobs" / "cache-demo.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[:count]]


def estimate_jobs(
    sim: RunningSimulator,
    path: Path,
    models: list[str],
    history: dict[str, tuple[int, float]],
    catalog_file: Path | None = None,
) -> Estimate:
    async def go() -> Estimate:
        client = ApiClient(endpoint_for(sim), Deadlines(), max_connections=16)
        catalog = load_catalog(catalog_file)
        try:
            planned = planned_from_file(
                read_jobs(path, catalog, ReadOptions(models=models)), models
            )
            return await estimate(planned, catalog, TokenCounter(client), history)
        finally:
            await client.aclose()

    return run_fast(go())


def hand_reads(sim: RunningSimulator, jobs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(counted input tokens, expected cache read) per line, worked out by hand: every line
    after the first shares the system prompt and the user role item with the first."""
    shared = len(orjson.dumps({"text": jobs[0]["params"]["system"], "type": "text"})) + ROLE
    out = []
    with make_client(sim) as sdk:
        for number, job in enumerate(jobs):
            params = job["params"]
            tokens = sdk.messages.count_tokens(
                model=M27, system=params["system"], messages=params["messages"]
            ).input_tokens
            question = {"text": params["messages"][0]["content"], "type": "text"}
            size = shared + len(orjson.dumps(question))
            out.append((tokens, 0 if number == 0 else tokens * shared // size))
    return out


def test_the_estimate_expects_the_shared_prefix_at_the_cache_read_price(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    jobs = cache_demo_lines(12)
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    # MiniMax-M3 without a cache-read price (a user's price list that gives none).
    unpriced_read = tmp_path / "prices.toml"
    unpriced_read.write_text(
        f'[[models."{M3}".prices]]\neffective = 2026-11-22\ninput = 0.30\noutput = 1.20\n'
    )
    found = estimate_jobs(sim, path, [M27, M3], {M27: (10, 100.0)}, unpriced_read)
    counted = hand_reads(sim, jobs)
    tokens = sum(t for t, _ in counted)
    reads = sum(r for _, r in counted)
    assert reads > 11 * 1900  # 11 of the 12 lines read the ~2,000-token policy
    m27 = found.models[M27]
    assert (m27.input_tokens, m27.expected_cache_read_tokens) == (tokens, reads)
    # USD per million: input 0.30, output 1.20, cache read 0.06 -> nanos per token 300/1200/60.
    assert m27.cost_min_nanos == tokens * 300
    assert m27.cost_max_nanos == tokens * 300 + 12 * 300 * 1200
    assert m27.cached_cost_min_nanos == (tokens - reads) * 300 + reads * 60
    assert m27.cached_cost_max_nanos == (tokens - reads) * 300 + reads * 60 + 12 * 300 * 1200
    assert m27.cost_expected_nanos == tokens * 300 + 12 * 100 * 1200
    assert m27.cached_cost_expected_nanos == (tokens - reads) * 300 + reads * 60 + 12 * 100 * 1200
    # No cache-read price: the same reads are expected, their cost is unpriced, never $0.
    m3 = found.models[M3]
    assert m3.expected_cache_read_tokens == reads
    assert m3.cost_min_nanos == tokens * 300
    assert m3.cache_unpriced == 11
    assert m3.cached_cost_min_nanos is m3.cached_cost_max_nanos is None
    assert m3.cached_cost_expected_nanos is None
    total = found.total()
    assert total.expected_cache_read_tokens == 2 * reads
    assert total.cached_cost_min_nanos is None  # one model's is unpriced
    # The same every time although the counting workers finish in any order.
    again = estimate_jobs(sim, path, [M27, M3], {M27: (10, 100.0)}, unpriced_read)
    assert again.models == found.models
    # As shown: M3's cost with cache is unpriced, never $0, and the note says why.
    console = Console(record=True, width=200)
    print_estimate(console, found, "Estimate")
    shown = console.export_text()
    m3_row = next(line for line in shown.splitlines() if "MiniMax-M3" in line and "%" in line)
    assert m3_row.count("unpriced") == 2
    assert "$0.000000" not in shown
    m27_row = next(line for line in shown.splitlines() if "MiniMax-M2.7" in line and "%" in line)
    assert usd(m27.cached_cost_min_nanos) in m27_row
    assert "MiniMax-M3 has no cache-read price: its cost with cache is unpriced." in shown


class FirstLineLast:
    """Counts as the simulator does, but answers for the first line only after the others: the
    counting workers finish out of file order."""

    def __init__(self) -> None:
        self.answered: list[str] = []

    async def input_tokens(
        self,
        model: str,
        params: dict[str, Any],
        content_hash: str,
        known: tuple[int | None, bool | None] = (None, None),
    ) -> Any:
        first = params["messages"][0]["content"].startswith("First")
        await anyio.sleep(0.2 if first else 0)
        self.answered.append(params["messages"][0]["content"])
        return count_request(params), False


def test_the_expectation_follows_file_order_whatever_order_the_counts_come_in(
    tmp_path: Path,
) -> None:
    policy = cache_demo_lines(1)[0]["params"]["system"]
    questions = ["First, a question far longer than the others: " + "why? " * 40, "Short?", "Hm?"]
    jobs = [
        {"custom_id": f"q{n}", "params": body(policy, q, max_tokens=10)}
        for n, q in enumerate(questions)
    ]
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    counter = FirstLineLast()
    catalog = load_catalog()
    planned = planned_from_file(read_jobs(path, catalog, ReadOptions(models=[M27])), [M27])
    found = run_fast(estimate(planned, catalog, counter, {}))  # type: ignore[arg-type]
    assert counter.answered[-1] == questions[0]  # counted last
    shared = len(orjson.dumps({"text": policy, "type": "text"})) + ROLE
    reads = 0
    for question in questions[1:]:  # the first line (in the file) reads nothing
        params = body(policy, question)
        size = shared + len(orjson.dumps({"text": question, "type": "text"}))
        reads += count_request(params) * shared // size
    assert found.models[M27].expected_cache_read_tokens == reads


def test_a_batch_without_shared_prefixes_expects_no_cache_reads(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    jobs = [
        {"custom_id": f"j{i}", "prompt": f"Question {i} " + "word " * 600, "max_tokens": 10}
        for i in range(3)
    ]  # long, but they differ from the first token on
    found = estimate_jobs(sim, write_jobs(tmp_path / "jobs.jsonl", jobs), [M27], {})
    m27 = found.models[M27]
    assert m27.expected_cache_read_tokens == 0
    assert (m27.cached_cost_min_nanos, m27.cached_cost_max_nanos) == (
        m27.cost_min_nanos,
        m27.cost_max_nanos,
    )


def flat(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.slow  # two estimates, ~12 s: make test-slow
def test_the_estimate_command_shows_the_cost_with_cache_and_its_assumption(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", cache_demo_lines(6))
    shown = batchrun(tmp_path, "estimate", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert shown.returncode == 0, shown.stderr
    out = flat(shown.stdout)
    assert "With the expected prompt-cache reads" in out
    assert "cost without cache" in out
    assert "cost with cache" in out
    assert re.search(r"\d{1,3},\d{3} \(8\d%\)", out), out  # 5 of 6 lines read ~97% of theirs
    assert (
        "Cost with cache assumes MiniMax's passive prompt cache serves each prefix of at least "
        "512 tokens (tools, then system, then leading messages" in out
    )
    assert "read at the model's cache-read price" in out
    assert "within the cache's lifetime (5m00s" in out
    assert "Not guaranteed" in out
    # Lines that share nothing: no table with cache, and it says why.
    write_jobs(tmp_path / "plain.jsonl", [{"custom_id": "a", "prompt": "Hi"}])
    plain = batchrun(tmp_path, "estimate", "plain.jsonl", "--models", M27, "--sim-time-scale", "0")
    assert plain.returncode == 0, plain.stderr
    assert "No cache reads expected: no line shares a prefix of at least 512 tokens" in flat(
        plain.stdout
    )
    assert "With the expected prompt-cache reads" not in plain.stdout


def test_the_sample_is_what_its_generator_writes() -> None:
    script = ROOT / "jobs" / "make_cache_demo.py"
    namespace: dict[str, Any] = {"__name__": "cache_demo"}
    exec(compile(script.read_text("utf-8"), str(script), "exec"), namespace)
    written = (ROOT / "jobs" / "cache-demo.jsonl").read_text("utf-8")
    assert written == "".join(line + "\n" for line in namespace["lines"]())
    assert len(written.splitlines()) == 40


# --- the run --------------------------------------------------------------------------------------


def stored(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "select r.*, q.custom_id as job from results r join requests q on q.id = r.request_id"
            " order by r.model, r.sent_at"
        ).fetchall()
    return [dict(row) for row in rows]


def test_a_run_stores_the_expected_cache_tokens_next_to_the_reported_reads(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", cache_demo_lines(10))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", f"{M27},{M3}", "--sim-time-scale", "0",
        "--concurrency", "1", "--yes",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = flat(done.stdout)
    assert "Estimate of the requests to send" in out
    assert "Cost with cache assumes" in out
    rows = stored(tmp_path / "batchrun.db")
    assert len(rows) == 20
    for name in (M27, M3):
        first, *later = [r for r in rows if r["model"] == name]
        assert first["expected_cache_tokens"] == first["cache_read_tokens"] == 0
        for row in later:  # the simulator reads the policy and the role item: within 1%
            assert row["cache_read_tokens"] > 1900
            assert abs(row["expected_cache_tokens"] - row["cache_read_tokens"]) <= (
                row["cache_read_tokens"] / 100
            )
    # The estimate kept with the batch has the cost with cache, and still compares with actual.
    with sqlite3.connect(tmp_path / "batchrun.db") as connection:
        settings = json.loads(connection.execute("select settings from batches").fetchone()[0])
    kept = settings["estimate"][M27]
    assert kept["expected_cache_read_tokens"] > 9 * 1900
    assert kept["cached_cost_min_nanos"] < kept["cost_min_nanos"]
    assert kept["cached_cost_max_nanos"] < kept["cost_max_nanos"]
    metrics = metrics_frame(Store(database_url(str(tmp_path / "batchrun.db"))))
    compared = estimate_vs_actual(settings["estimate"], metrics)
    assert set(compared["model"]) == {M27, M3}
    assert compared["estimated_requests"].to_list() == [10, 10]


@pytest.mark.slow  # ~9 s of CLI runs: make test-slow
def test_streamed_reads_reported_as_zero_leave_the_expectation_standing(
    tmp_path: Path, sim_factory: Any
) -> None:
    quirky = sim_factory(quirks=frozenset({"stream_cache_read_zero"}))
    write_jobs(tmp_path / "jobs.jsonl", cache_demo_lines(8))
    done = batchrun(
        tmp_path, "run", "jobs.jsonl", "--models", M27, "--base-url",
        f"{quirky.base_url}/anthropic", "--concurrency", "1", "--yes", key=API_KEY,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = stored(tmp_path / "batchrun.db")
    assert [r["cache_read_tokens"] for r in rows] == [0] * 8  # every call streams
    expected = [r["expected_cache_tokens"] for r in rows]
    assert expected[0] == 0
    assert all(e > 1900 for e in expected[1:])
    # What the analytics (C2) make of it: 7 expected hits, all 7 unreported: flagged.
    metrics = metrics_frame(Store(database_url(str(tmp_path / "batchrun.db")))).row(0, named=True)
    assert (metrics["expected_cache_hits"], metrics["unreported_cache_hits"]) == (7, 7)
    assert metrics["cache_trust"] == cache_trust_note(7, 7)
    assert metrics["cache_trust"] is not None


def test_the_demo_runs_the_cache_sample() -> None:
    demo = subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "jobs/cache-demo.jsonl" in demo
    assert "--name cache-demo" in demo
