"""The prompt-cache figures (issue 16): stored per result, summed by analytics, shown by the CLI.

Every figure is checked against values worked out here from the stored token counts and the
catalog's prices (USD per million tokens; 1 token at rate r costs r x 1,000 nano-dollars):
- hit rate = cache read / (input + cache read + cache creation);
- cache-write cost = cache creation x write rate;
- saving = cache read x (input rate - read rate) - cache creation x (write rate - input rate),
  which must equal the sum of (uncached cost - cost) over the priced results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, select, text

from batchrun import analytics, requests_frame
from batchrun.api.client import CallResult
from batchrun.api.stream import Timings
from batchrun.catalog import Catalog, load_catalog
from batchrun.cli.display import summary_of
from batchrun.pricing import Usage, cost_of, day_of, usd
from batchrun.reprice import reprice
from batchrun.run.launch import LimitOptions
from batchrun.run.results import result_row
from batchrun.sim import RunningSimulator
from batchrun.store import Outcome, Store, alembic_config
from batchrun.store.migrate import HEAD_REVISION
from batchrun.store.tables import RESULT_METRICS, results
from tests.dbfixtures import engine, postgres_server, postgres_url, sqlite_url, store_url
from tests.helpers import batchrun
from tests.runharness import Run, run_jobs
from tests.test_store import batch_row, spec

__all__ = ["engine", "postgres_server", "postgres_url", "sqlite_url", "store_url"]

M3 = "MiniMax-M3"
M27 = "MiniMax-M2.7"
M27HS = "MiniMax-M2.7-highspeed"
LOCAL = "Acme-Local"  # a model of the user's own catalog file, with no price
NANOS_PER_RATE = 1000  # nano-dollars of one token at 1 USD per million
DAY = 1_796_083_200.0  # 2026-12-01 00:00 UTC: every built-in price is in effect
BEFORE_PRICES = 1_767_225_600.0  # 2026-01-01: no built-in price yet, so unpriced
CACHE_COLUMNS = (
    "prompt_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cached_requests",
    "cache_write_cost_nanos",
    "cache_saving_nanos",
    "saving_unknown",
    "expected_cache_hits",
    "unreported_cache_hits",
    "cache_hit_rate",
    "cache_trust",
)

# A system prompt of a little over 2,000 tokens, shared by every line (marked for caching, which
# M2.7 honours and reports as cache creation; M3 ignores marks and caches passively).
SYSTEM = " ".join(f"Rule {n}: answer briefly and cite rule {n}." for n in range(230))
JOBS = [
    {
        "custom_id": f"q{n}",
        "params": {
            "max_tokens": 200,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": f"Question {n}: which rule applies here?"}],
        },
    }
    for n in range(6)
]
MODELS = (M3, M27, M27HS)


# --------------------------------------------------------------------------- hand computation


@dataclass
class Expected:
    """One group's figures, worked out by hand from its stored results."""

    results: int = 0
    prompt: int = 0
    read: int = 0
    creation: int = 0
    cached: int = 0
    priced: int = 0
    cost: int = 0
    uncached: int = 0
    write_cost: int = 0
    saving: int = 0  # from the rate differences, not from the stored columns

    @property
    def hit_rate(self) -> float | None:
        return self.read / self.prompt if self.prompt else None


def nanos(tokens: int, rate: Decimal | None) -> int:
    """``tokens`` at ``rate``, which must come out as whole nano-dollars with these prices."""
    if not tokens:
        return 0
    assert rate is not None
    exact = tokens * rate * NANOS_PER_RATE
    assert exact == int(exact)  # no rounding hides in the comparisons below
    return int(exact)


def add_result(figures: Expected, row: dict[str, Any], catalog: Catalog) -> None:
    """Add one stored result to ``figures``; a priced one also checks its stored cost columns."""
    inp, out = row["input_tokens"], row["output_tokens"]
    read, creation = row["cache_read_tokens"], row["cache_creation_tokens"]
    figures.results += 1
    figures.prompt += inp + read + creation
    figures.read += read
    figures.creation += creation
    figures.cached += read > 0
    price = catalog.get(row["model"]).price_on(day_of(row["sent_at"]))
    if price is None:
        assert (row["cost_nanos"], row["uncached_cost_nanos"]) == (None, None)
        assert row["cache_write_cost_nanos"] is None
        return
    r = price.rates  # every prompt here is far below M3's long-context tier
    assert r.input is not None
    assert r.output is not None
    cost = nanos(inp, r.input) + nanos(out, r.output)
    cost += nanos(read, r.cache_read) + nanos(creation, r.cache_write)
    uncached = nanos(inp + read + creation, r.input) + nanos(out, r.output)
    write = nanos(creation, r.cache_write)
    assert (row["cost_nanos"], row["uncached_cost_nanos"]) == (cost, uncached)
    assert row["cache_write_cost_nanos"] == write
    figures.priced += 1
    figures.cost += cost
    figures.uncached += uncached
    figures.write_cost += write
    figures.saving += nanos(read, r.input) - nanos(read, r.cache_read)
    figures.saving -= nanos(creation, r.cache_write) - nanos(creation, r.input)


def by_model(rows: Sequence[dict[str, Any]], catalog: Catalog) -> dict[str, Expected]:
    figures: dict[str, Expected] = {}
    for row in rows:
        add_result(figures.setdefault(row["model"], Expected()), row, catalog)
    return figures


def check_group(row: dict[str, Any], want: Expected) -> None:
    """One row of model_metrics or spend against the hand-computed figures."""
    assert row["prompt_tokens"] == want.prompt
    assert row["cache_read_tokens"] == want.read
    assert row["cache_creation_tokens"] == want.creation
    assert row["cached_requests"] == want.cached
    if want.hit_rate is None:
        assert row["cache_hit_rate"] is None
    else:
        assert row["cache_hit_rate"] == pytest.approx(want.hit_rate, rel=1e-12)
    if want.priced:
        assert row["cache_write_cost_nanos"] == want.write_cost
        assert row["cache_saving_nanos"] == want.saving == want.uncached - want.cost
    else:  # unpriced stays unpriced: no $0 write cost, no saving from a missing price
        assert row["cache_write_cost_nanos"] is None
        assert row["cache_saving_nanos"] is None
    assert row["saving_unknown"] == 0


def cache_line(stdout: str, group: str) -> str:
    """The row of ``group`` in the 'Prompt cache' table a command printed."""
    _, table = stdout.split("Prompt cache", 1)
    return next(line for line in table.splitlines() if line.startswith(f"│ {group} "))


def cache_cells(stdout: str, group: str) -> list[str]:
    """The cells of ``group``'s row in the 'Prompt cache' table."""
    return [cell.strip() for cell in cache_line(stdout, group).strip("│").split("│")]


def rows_by(table: pl.DataFrame, key: str = "model") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in table.iter_rows(named=True)}


# --------------------------------------------------------------------------- (a) a real run


@pytest.fixture
def cached_run(tmp_path: Path, sim: RunningSimulator) -> Run:
    """The shared-prefix batch on the simulator (passive caching on, its default), one request
    at a time per model so each model's first line writes the cache and the others read it."""
    one_at_a_time = LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 1})
    run = run_jobs(tmp_path, sim, JOBS, MODELS, limits=one_at_a_time)
    assert len(run.results()) == len(JOBS) * len(MODELS)
    return run


def test_a_real_run_stores_the_cost_figures_of_each_result(cached_run: Run) -> None:
    stored = cached_run.results()
    figures = by_model(stored, load_catalog())  # checks each row's three cost columns
    assert set(figures) == set(MODELS)
    for model, want in figures.items():
        # The simulator served each later line's shared system prompt from its cache.
        assert want.cached == len(JOBS) - 1, model
        assert want.read > 2_000 * (len(JOBS) - 1), model
        assert want.saving > 0, model
    assert figures[M27].creation > 2_000  # the mark's write, priced at M2.7's write rate
    assert figures[M27].write_cost > 0
    assert figures[M3].creation == 0  # M3 never reports cache creation
    # batchrun's own expectation (one request at a time): nothing for each model's first line,
    # then about what the simulator read (the bytes-share rule leaves out its overheads).
    for model in MODELS:
        rows = sorted((r for r in stored if r["model"] == model), key=lambda r: r["sent_at"])
        assert rows[0]["expected_cache_tokens"] == 0, model
        for row in rows[1:]:
            assert row["expected_cache_tokens"] == pytest.approx(row["cache_read_tokens"], rel=0.02)


def test_analytics_figures_of_a_real_run_match_the_hand_computed_ones(cached_run: Run) -> None:
    store, batch = cached_run.store, cached_run.plan.batch
    figures = by_model(cached_run.results(), load_catalog())
    frame = requests_frame(store)  # from the covering index, as the dashboard reads it
    per_model = rows_by(analytics.model_metrics(frame))
    summary = rows_by(summary_of(store, batch))  # what status and the end of a run show
    spent = rows_by(analytics.spend(analytics.results_frame(store.result_rows()), "model"))
    for model, want in figures.items():
        for table in (per_model, summary, spent):
            check_group(table[model], want)
            assert table[model]["cache_trust"] is None
            assert table[model]["expected_cache_hits"] == len(JOBS) - 1
            assert table[model]["unreported_cache_hits"] == 0
    per_batch = analytics.model_metrics(frame, by=("batch_name", "model"))
    per_day = analytics.model_metrics(frame, by=("day", "model"))
    for grouped in (per_batch, per_day):
        assert grouped.height == len(MODELS)  # one batch, one day
        for row in grouped.iter_rows(named=True):
            check_group(row, figures[row["model"]])
    total = analytics.cache_total(analytics.model_metrics(frame)).row(0, named=True)
    assert total["cache_saving_nanos"] == sum(f.saving for f in figures.values())
    assert total["cache_hit_rate"] == pytest.approx(
        sum(f.read for f in figures.values()) / sum(f.prompt for f in figures.values())
    )


# --------------------------------------------------------------------------- (e) the CLI


def test_status_and_spend_show_the_cache_figures(tmp_path: Path, cached_run: Run) -> None:
    figures = by_model(cached_run.results(), load_catalog())
    name = cached_run.plan.batch.name
    shown = batchrun(tmp_path, "status", name)
    assert shown.returncode == 0, shown.stderr
    assert "Prompt cache" in shown.stdout
    for model, want in figures.items():
        assert want.hit_rate is not None
        assert cache_cells(shown.stdout, model) == [
            model,
            f"{want.hit_rate:.1%}",
            f"{want.cached} of {want.results}",
            f"{want.read:,}",
            f"{want.creation:,}",
            usd(want.write_cost) if want.creation else "-",  # M3: no writes, so no write cost
            usd(want.saving),
        ]
    saved = sum(f.saving for f in figures.values())
    assert f"The prompt cache saved {usd(saved)}" in shown.stdout
    assert "Warning" not in shown.stdout

    document = orjson.loads(batchrun(tmp_path, "status", name, "--json").stdout)
    listed = {m["model"]: m for m in document["models"]}
    for model, want in figures.items():
        check_group(listed[model], want)
    assert document["cache"]["cache_saving_nanos"] == saved

    for by in ("model", "batch", "day"):
        spent = batchrun(tmp_path, "spend", "--by", by)
        assert spent.returncode == 0, spent.stderr
        assert f"Prompt cache by {by}" in spent.stdout
        assert f"The prompt cache saved {usd(saved)}" in spent.stdout
    spend_json = orjson.loads(batchrun(tmp_path, "spend", "--json").stdout)
    assert spend_json["real"]["rows"] == []  # a simulated run: nothing in real spend
    for row in spend_json["simulated"]["rows"]:
        check_group(row, figures[row["model"]])
    assert spend_json["simulated"]["total"]["cache_saving_nanos"] == saved


# --------------------------------------------------------------------------- synthetic stores


@dataclass(frozen=True)
class Line:
    """One synthetic result: its model and usage, when it was sent, what cache read was expected."""

    model: str
    input: int
    read: int = 0
    creation: int = 0
    output: int = 50
    sent_at: float = DAY
    expected: int | None = None


def synthetic_store(url: str, catalog: Catalog, lines: Sequence[Line]) -> Store:
    """A store holding one batch whose results are ``lines``, built and priced as the runner
    builds them (run.results.result_row)."""
    store = Store(url)
    store.create_batch(batch_row("b1", name="synthetic", models=[]))
    store.add_jobs("b1", [spec(n, f"q{n}", model=line.model) for n, line in enumerate(lines)], [])
    items = {
        item.custom_id: item
        for m in {x.model for x in lines}
        for item in store.pending("b1", m, 0, 1000)
    }
    outcomes = []
    for n, line in enumerate(lines):
        item = items[f"q{n}"]
        usage = {
            "input_tokens": line.input,
            "output_tokens": line.output,
            "cache_read_input_tokens": line.read,
            "cache_creation_input_tokens": line.creation,
        }
        call = CallResult(
            message={
                "role": "assistant",
                "content": [{"type": "text", "text": "ok"}],
                "usage": usage,
            },
            sent_at=line.sent_at,
            timings=Timings(
                first_event=0.1, first_token=0.2, first_text=0.2, last_token=0.9, done=1.0
            ),
        )
        row = result_row(
            catalog.get(line.model),
            call,
            item.params,
            priority_multiplier=catalog.priority_multiplier,
            simulated=True,
            expected_cache_tokens=line.expected,
        )
        outcomes.append(
            Outcome(
                request_id=item.request_id,
                batch_id="b1",
                model=line.model,
                custom_id=item.custom_id,
                status="succeeded",
                result=row,
            )
        )
    store.record(outcomes)
    return store


@pytest.fixture
def local_catalog(tmp_path: Path) -> Path:
    """A catalog file adding a model with no price."""
    path = tmp_path / "catalog.toml"
    path.write_text(
        f'[models."{LOCAL}"]\ncontext_window = 32_000\nthinking = "always"\n'
        'content_kinds = ["text"]\ndefault_top_p = 0.9\ncount_tokens = "undocumented"\n'
    )
    return path


UNPRICED_LINES = [
    Line(LOCAL, input=100),
    Line(LOCAL, input=20, read=900),
    Line(LOCAL, input=20, read=900),
    Line(M27, input=20, read=900),
    Line(M27, input=20, creation=700),
    Line(M27, input=20, read=900, sent_at=BEFORE_PRICES),  # no price that day: unpriced
]


def test_an_unpriced_model_has_a_hit_rate_but_no_cost_or_saving(
    tmp_path: Path, local_catalog: Path
) -> None:
    catalog = load_catalog(local_catalog)
    store = synthetic_store(f"sqlite:///{tmp_path / 'batchrun.db'}", catalog, UNPRICED_LINES)
    try:
        figures = by_model(store.result_rows(), catalog)
        metrics = rows_by(analytics.model_metrics(requests_frame(store)))
        spent = rows_by(analytics.spend(analytics.results_frame(store.result_rows()), "model"))
    finally:
        store.close()
    # By hand: Acme-Local reads 1,800 of 1,940 prompt tokens and has no price at all.
    assert figures[LOCAL].hit_rate == pytest.approx(1800 / 1940)
    assert figures[LOCAL].priced == 0
    # M2.7: 900 read x (0.30 - 0.06) - 700 written x (0.375 - 0.30), over its two priced results;
    # its third result (no price that day) counts toward the hit rate only.
    assert figures[M27].saving == 900 * 240 - 700 * 75 == 163_500
    assert figures[M27].write_cost == 700 * 375
    assert figures[M27].hit_rate == pytest.approx(1800 / 2560)
    for table in (metrics, spent):
        for model, want in figures.items():
            check_group(table[model], want)
        assert table[LOCAL]["unpriced"] == 3
        assert table[M27]["unpriced"] == 1

    shown = batchrun(tmp_path, "spend")
    assert shown.returncode == 0, shown.stderr
    # No price: the hit rate shows, the saving says unpriced (never $0); no writes, no write cost.
    assert cache_cells(shown.stdout, LOCAL) == [
        LOCAL, f"{1800 / 1940:.1%}", "2 of 3", "1,800", "0", "-", "unpriced",
    ]  # fmt: skip
    assert cache_cells(shown.stdout, M27) == [
        M27, f"{1800 / 2560:.1%}", "2 of 3", "1,800", "700",
        f"{usd(262_500)} + 1 unpriced", f"{usd(163_500)} + 1 unpriced",
    ]  # fmt: skip


# --------------------------------------------------------------------------- (c) trust flag


def test_cache_trust_note_flags_most_expected_hits_unreported() -> None:
    assert analytics.cache_trust_note(0, 0) is None
    assert analytics.cache_trust_note(4, 4) is None  # too few to judge
    assert analytics.cache_trust_note(6, 3) is None  # half is not more than half
    note = analytics.cache_trust_note(6, 4)
    assert note is not None
    assert "4 of 6 requests" in note
    assert "under-report" in note
    assert analytics.cache_trust_note(5, 3) is not None  # CACHE_TRUST_MIN is 5


TRUST_LINES = [
    # M3: 6 results expected to read the cache, 4 reported no read (streamed usage): flagged.
    *[Line(M3, input=2_100, expected=2_000) for _ in range(4)],
    *[Line(M3, input=100, read=2_000, expected=2_000) for _ in range(2)],
    Line(M3, input=2_100, expected=0),  # nothing expected: not counted
    # M2.7: 6 expected, 3 unreported: half, not flagged.
    *[Line(M27, input=2_100, expected=2_000) for _ in range(3)],
    *[Line(M27, input=100, read=2_000, expected=2_000) for _ in range(3)],
    # M2.7-highspeed: 4 expected, all unreported, but fewer than 5: not flagged.
    *[Line(M27HS, input=2_100, expected=2_000) for _ in range(4)],
    # M2.5: stored before batchrun kept the expectation (NULL): never flagged.
    *[Line("MiniMax-M2.5", input=2_100) for _ in range(6)],
]


def test_zero_cache_reads_where_hits_were_expected_are_flagged(tmp_path: Path) -> None:
    catalog = load_catalog()
    store = synthetic_store(f"sqlite:///{tmp_path / 'batchrun.db'}", catalog, TRUST_LINES)
    try:
        metrics = rows_by(analytics.model_metrics(requests_frame(store)))
        spent = rows_by(analytics.spend(analytics.results_frame(store.result_rows()), "model"))
        summary = rows_by(summary_of(store, store.find_batch("b1")))
    finally:
        store.close()
    for table in (metrics, spent, summary):
        assert (table[M3]["expected_cache_hits"], table[M3]["unreported_cache_hits"]) == (6, 4)
        assert table[M3]["cache_trust"] == analytics.cache_trust_note(6, 4)
        assert (table[M27]["expected_cache_hits"], table[M27]["unreported_cache_hits"]) == (6, 3)
        assert table[M27]["cache_trust"] is None
        assert table[M27HS]["unreported_cache_hits"] == 4
        assert table[M27HS]["cache_trust"] is None
        assert table["MiniMax-M2.5"]["expected_cache_hits"] == 0
        assert table["MiniMax-M2.5"]["cache_trust"] is None

    shown = batchrun(tmp_path, "status", "synthetic")
    assert shown.returncode == 0, shown.stderr
    warnings = [x for x in shown.stdout.splitlines() if x.startswith("Warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Warning: {M3}: cache reads may be under-reported.")
    assert "4 of 6 requests" in shown.stdout
    document = orjson.loads(batchrun(tmp_path, "status", "synthetic", "--json").stdout)
    flagged = {m["model"]: m["cache_trust"] for m in document["models"]}
    assert flagged[M3] == analytics.cache_trust_note(6, 4)
    assert flagged[M27] is None
    assert "4 of 6 requests" in batchrun(tmp_path, "spend").stdout


# --------------------------------------------------------------------------- (d) migration 0006


MIGRATED_LINES = [
    Line(M27, input=300, output=40),  # priced, no cache: backfilled exactly
    Line(M27, input=20, read=900),  # a cache read: left NULL for reprice
    Line(M27, input=20, creation=700),  # a cache write: left NULL for reprice
    Line(M27, input=300, sent_at=BEFORE_PRICES),  # unpriced: stays NULL
    Line(M3, input=500, output=10),  # priced, no cache
]


def stored_costs(engine: Engine) -> list[tuple[Any, ...]]:
    query = select(
        results.c.custom_id,
        results.c.cost_nanos,
        results.c.uncached_cost_nanos,
        results.c.cache_write_cost_nanos,
        results.c.expected_cache_tokens,
    ).order_by(results.c.request_id)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_migration_0006_backfills_exactly_and_reprice_fills_the_rest(
    store_url: str, engine: Engine
) -> None:
    catalog = load_catalog()
    synthetic_store(store_url, catalog, MIGRATED_LINES).close()
    at_head = stored_costs(engine)
    with engine.begin() as connection:  # back to 0005, the results kept without the new columns
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    columns = {c["name"] for c in inspect(engine).get_columns("results")}
    assert not columns & {"expected_cache_tokens", "uncached_cost_nanos", "cache_write_cost_nanos"}

    store = Store(store_url)  # opening migrates 0005 -> 0006
    try:
        migrated = stored_costs(engine)
        cost = {row[0]: row[1] for row in at_head}
        assert migrated == [
            ("q0", cost["q0"], cost["q0"], 0, None),  # exact: no cache, uncached = cost
            ("q1", cost["q1"], None, None, None),
            ("q2", cost["q2"], None, None, None),
            ("q3", None, None, None, None),
            ("q4", cost["q4"], cost["q4"], 0, None),
        ]
        assert cost["q0"] == 300 * 300 + 40 * 1200  # by hand, M2.7 at 0.30 / 1.20
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == HEAD_REVISION  # on to the head, through 0006
            )
        index = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("results")}
        assert index["ix_results_metrics"][-4:] == [
            "expected_cache_tokens",
            "uncached_cost_nanos",
            "cache_write_cost_nanos",
            "simulated",  # 0007
        ]
        # Old rows with cache use say their saving is unknown rather than guessing it.
        before = rows_by(analytics.model_metrics(requests_frame(store)))
        assert before[M27]["saving_unknown"] == 2
        assert before[M27]["cache_saving_nanos"] == 0  # only q0's (exact) saving is known
        assert before[M27]["cache_write_cost_nanos"] == 0

        [change_m27] = [c for c in reprice(store, catalog, None) if c.model == M27]
        assert change_m27.cache_figures_filled == 2
        assert change_m27.changed == 0  # the costs themselves did not change
        after = rows_by(analytics.model_metrics(requests_frame(store)))
    finally:
        store.close()
    assert stored_costs(engine) == at_head  # all three cost columns, as the run stored them
    assert after[M27]["saving_unknown"] == 0
    assert after[M27]["cache_saving_nanos"] == 900 * 240 - 700 * 75
    assert after[M27]["cache_write_cost_nanos"] == 700 * 375


def test_reprice_command_says_it_filled_the_cache_figures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'batchrun.db'}"
    synthetic_store(url, load_catalog(), MIGRATED_LINES).close()
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE results SET uncached_cost_nanos = NULL"))
    finally:
        engine.dispose()
    shown = batchrun(tmp_path, "spend")
    assert "unknown" in shown.stdout
    assert "batchrun reprice" in shown.stdout
    repriced = batchrun(tmp_path, "reprice")
    assert repriced.returncode == 0, repriced.stderr
    assert "4 results gained their cache figures" in repriced.stdout
    assert "unknown" not in batchrun(tmp_path, "spend").stdout


# --------------------------------------------------------------------------- pricing, index


def test_the_uncached_cost_uses_the_same_tier_and_multiplier_as_the_cost() -> None:
    m3, m27 = load_catalog().get(M3), load_catalog().get(M27)
    # 580,000 + 20,000 cached = 600,000 prompt tokens: past M3's 512,000, so every token is at the
    # long-context rates (0.60 input, 2.40 output, 0.12 read), uncached as well as cached.
    cost = cost_of(m3, Usage(input_tokens=580_000, output_tokens=1_000, cache_read_tokens=20_000),
                   day_of(DAY))  # fmt: skip
    assert cost is not None
    assert cost.nanos == 580_000 * 600 + 1_000 * 2_400 + 20_000 * 120
    assert cost.uncached_nanos == 600_000 * 600 + 1_000 * 2_400
    assert cost.saving_nanos == 20_000 * (600 - 120)
    assert cost.cache_write_nanos == 0
    # Priority (x1.5) applies to all three figures; the write part is of the cost.
    usage = Usage(
        input_tokens=100, output_tokens=10, cache_read_tokens=300, cache_creation_tokens=7
    )
    priority = cost_of(m27, usage, day_of(DAY), Decimal("1.5"))
    assert priority is not None
    # (100 x 300 + 10 x 1,200 + 300 x 60 + 7 x 375) x 1.5 = 62,625 x 1.5 = 93,937.5, half up
    assert priority.nanos == 93_938
    assert priority.uncached_nanos == (407 * 300 + 10 * 1_200) * 3 // 2 == 201_150
    assert priority.cache_write_nanos == 3_938  # 7 x 375 x 1.5 = 3,937.5, half up
    # A cache write without a write price (M3) leaves all of it unpriced, saving included.
    assert cost_of(m3, Usage(input_tokens=10, cache_creation_tokens=600), day_of(DAY)) is None


def test_the_cache_figures_are_read_from_the_covering_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'batchrun.db'}"
    synthetic_store(url, load_catalog(), MIGRATED_LINES).close()
    columns = (results.c[c] for c in RESULT_METRICS)
    query = select(results.c.request_id, results.c.model, *columns).where(
        results.c.batch_id.in_(["b1"])
    )
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(
                str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            )
    finally:
        engine.dispose()
    assert "USING COVERING INDEX ix_results_metrics" in plan
