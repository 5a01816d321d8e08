"""What a run shows while it runs and when it ends."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batchrun.pricing import usd
from batchrun.run.progress import ModelProgress, RunProgress, eta_text

if TYPE_CHECKING:
    import polars as pl

    from batchrun.plan.estimate import Estimate, ModelEstimate
    from batchrun.store import BatchInfo, Store

PLAIN_EVERY = 5.0


class ProgressDisplay:
    """A live table per model on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self._last_plain = 0.0
        self._warned = 0  # budget warnings printed so far (off a terminal)
        if sys.stdout.isatty():
            self.live = Live(console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> ProgressDisplay:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, progress: RunProgress) -> None:
        if self.live is not None:
            self.live.update(progress_table(progress))
            return
        for warning in progress.budget_warnings[self._warned :]:  # at once, not every 5 s
            self.console.print(f"Warning: {warning}.", markup=False, highlight=False)
        self._warned = len(progress.budget_warnings)
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            self.console.print(progress_line(progress))


def progress_table(progress: RunProgress) -> Table:
    """Per model: done, failed, remaining, tokens, spend so far, current rate, ETA."""
    warnings = "\n".join(f"Warning: {w}." for w in progress.budget_warnings)
    table = Table(
        title=f"running for {eta_text(progress.elapsed())}",
        caption=Text(warnings, style="yellow") if warnings else None,
        caption_justify="left",
    )
    for column in ("model", "done", "failed", "remaining", "tokens in/out", "spent", "rate", "ETA"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in progress.models.values():
        spent = usd(model.spent_nanos) + (f" +{model.unpriced} unpriced" if model.unpriced else "")
        table.add_row(
            _model_cell(model),
            f"{model.succeeded:,}",
            f"{model.errored + model.invalid:,}",
            f"{model.remaining:,}",
            f"{model.input_tokens:,}/{model.output_tokens:,}",
            spent,
            f"{model.rate():.1f}/s",
            eta_text(model.eta()),
        )
    return table


def _model_cell(model: ModelProgress) -> str:
    """The model's name, and whether it stopped or waits for its plan's quota."""
    if model.stopped:
        return f"{model.model} [red](stopped)[/]"
    waiting = model.quota_note()
    return f"{model.model} [yellow]({waiting})[/]" if waiting else model.model


def quota_lines(progress: RunProgress) -> list[str]:
    """'MODEL waiting for the plan's quota until 15:00:00 UTC, 4m12s', per model that waits."""
    notes = ((m.model, m.quota_note()) for m in progress.models.values() if not m.stopped)
    return [f"{model} {note}" for model, note in notes if note]


def progress_line(progress: RunProgress) -> str:
    """One line for logs: totals over every model, and the models waiting for their quota."""
    models = progress.models.values()
    done = sum(m.succeeded for m in models)
    failed = sum(m.errored + m.invalid for m in models)
    remaining = sum(m.remaining for m in models)
    rate = sum(m.rate() for m in models)
    spent = usd(sum(m.spent_nanos for m in models))
    eta = eta_text(remaining / rate if rate else None)
    waiting = "".join(f"; {line}" for line in quota_lines(progress))
    return (
        f"[{time.strftime('%H:%M:%S')}] {done:,} done, {failed:,} failed, {remaining:,} "
        f"remaining, {rate:.1f} req/s, {spent} spent, ETA {eta}{waiting}"
    )


def quota_waits(progress: RunProgress) -> list[str]:
    """For the end of a run: how long each model waited for its plan's quota to renew."""
    return [
        f"{m.model} waited {eta_text(m.quota_waited())} for the plan's quota (MiniMax 2056) "
        "to renew, then carried on"
        for m in progress.models.values()
        if m.quota_waited() > 0
    ]


def summary_of(store: Store, batch: BatchInfo) -> pl.DataFrame:
    """The per-model figures of one batch (analytics.summary_frame), read from the store."""
    from batchrun.analytics import summary_frame  # noqa: PLC0415 - polars loads only when used

    return summary_frame(
        store.result_metric_rows([batch.id]),
        store.status_counts(batch.id),
        store.retry_counts(batch.id),
        batch.simulated,
    )


def summary_table(summary: pl.DataFrame, title: str) -> Table:
    """The end-of-run table: one row per model (and origin, see ``summary_frame``), with the
    real and the simulated cost apart in its caption."""
    table = Table(title=title, caption=spend_caption(summary), caption_justify="left")
    columns = (
        "model", "requests", "success", "latency p50", "latency p90", "TTFT p50",
        "output tps p50", "tokens in/out", "cost",
    )  # fmt: skip
    flagged = any(_flag_note(row) for row in summary.iter_rows(named=True))
    for column in (*columns, "flagged") if flagged else columns:
        table.add_column(column, justify="left" if column in ("model", "flagged") else "right")
    mixed = "simulated" in summary.columns and summary["simulated"].n_unique() > 1
    for row in summary.iter_rows(named=True):
        cells = _summary_cells(row)
        if mixed:  # the same model on two rows: say which is which
            cells[0] += " (simulated)" if row["simulated"] else " (MiniMax)"
        table.add_row(*cells, *([_flag_note(row)] if flagged else []))
    return table


def _flag_note(row: dict[str, Any]) -> str:
    """Answers with leaked ``<think>`` reasoning or no content (see README, results), if any."""
    notes = [
        f"{row.get(column) or 0:,} {label}"
        for column, label in (("think_leaked", "think leaked"), ("empty_replies", "empty"))
        if row.get(column)
    ]
    return ", ".join(notes)


def spend_caption(summary: pl.DataFrame) -> str:
    """What the rows' results cost: real spend, and apart from it (never added) what the
    simulated ones would have cost."""
    parts = []
    for simulated, label in ((False, "Spent on MiniMax"), (True, SIMULATED_COST)):
        rows = [r for r in summary.iter_rows(named=True) if bool(r.get("simulated")) is simulated]
        results = sum(r.get("succeeded") or 0 for r in rows)
        if results or not simulated:  # real spend always said, even when it is none
            parts.append(f"{label}: {_rows_cost(rows) if rows else 'nothing'}")
    return "; ".join(parts) + "."


SIMULATED_COST = "simulated (not billed, MiniMax's prices)"


def _rows_cost(rows: list[dict[str, Any]]) -> str:
    priced = [r["cost_nanos"] for r in rows if r["cost_nanos"] is not None]
    unpriced = sum(r["unpriced"] or 0 for r in rows)
    cost = usd(sum(priced)) if priced else ("-" if unpriced else usd(0))
    return cost + (f" + {unpriced:,} unpriced" if unpriced else "")


def _summary_cells(row: dict[str, Any]) -> list[str]:
    cost = usd(row["cost_nanos"]) if row["cost_nanos"] is not None else "-"
    if row["unpriced"]:
        cost = f"{cost} + {row['unpriced']} unpriced"
    return [
        row["model"],
        f"{row['requests']:,}",
        f"{row['success_rate']:.1%}" if row["success_rate"] is not None else "-",
        _seconds(row["latency_p50"]),
        _seconds(row["latency_p90"]),
        _seconds(row["ttft_p50"]),
        f"{row['output_tps_p50']:.1f}" if row["output_tps_p50"] is not None else "-",
        f"{row['input_tokens'] or 0:,}/{row['output_tokens'] or 0:,}",
        cost,
    ]


def _seconds(value: float | None) -> str:
    return f"{value:.2f}s" if value is not None else "-"


CACHE_NOTE = (
    "hit rate: cache-read tokens / all prompt tokens (input + cache read + cache write); "
    "cached requests: those that read part of their prompt from the cache; saving: the cost with "
    "every prompt token at the input price, minus the cost (unpriced results left out)."
)


def cache_table(rows: list[dict[str, Any]], key: str, results: str, title: str) -> Table:
    """The prompt-cache figures, one row per group (``key``: model, batch or day); ``results``
    names the column counting each group's results."""
    table = Table(title=title)
    columns = (key, "hit rate", "cached requests", "cache read", "cache write", "write cost",
               "saving")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == key else "right")
    for row in rows:
        table.add_row(str(row[key]), *_cache_cells(row, results))
    return table


def _cache_cells(row: dict[str, Any], results: str) -> list[str]:
    rate = row.get("cache_hit_rate")
    written = row.get("cache_creation_tokens") or 0
    unpriced, unknown = row.get("unpriced") or 0, row.get("saving_unknown") or 0
    return [
        f"{rate:.1%}" if rate is not None else "-",
        f"{row.get('cached_requests') or 0:,} of {row.get(results) or 0:,}",
        f"{row.get('cache_read_tokens') or 0:,}",
        f"{written:,}",
        _priced_cell(row.get("cache_write_cost_nanos"), unpriced, unknown) if written else "-",
        _priced_cell(row.get("cache_saving_nanos"), unpriced, unknown),
    ]


def _priced_cell(nanos: int | None, unpriced: int, unknown: int) -> str:
    """A sum over priced results, and what it leaves out: unpriced results (never added as $0),
    and results stored before batchrun kept the figure ('unknown')."""
    left_out = ((unpriced, "unpriced"), (unknown, "unknown"))
    if nanos is None:
        return " / ".join(label for n, label in left_out if n) or "-"
    return usd(nanos) + "".join(f" + {n:,} {label}" for n, label in left_out if n)


def print_cache(
    out: Console,
    rows: list[dict[str, Any]],
    total: dict[str, Any],
    *,
    key: str,
    results: str,
    title: str,
    total_label: str = "total",
) -> None:
    """The prompt-cache table of some groups (with their total when there are several), what its
    figures mean, the saving, and the warnings; nothing when no prompt was sent."""
    if not total.get("prompt_tokens"):
        return
    if not (total["cache_read_tokens"] or total["cache_creation_tokens"] or total["cache_trust"]):
        out.print(
            "Prompt cache: no cache reads or writes reported (MiniMax caches prompts that share a "
            "long start, 512 tokens or more, with one sent shortly before)."
        )
        return
    shown = [*rows, {**total, key: total_label}] if len(rows) > 1 else rows
    out.print(cache_table(shown, key, results, title))
    out.print(f"[dim]{CACHE_NOTE}[/]")
    saving = total.get("cache_saving_nanos")
    if saving is not None and saving >= 0:
        out.print(f"The prompt cache saved {usd(saving)} on the priced requests.")
    elif saving is not None:
        out.print(f"Cache writes cost {usd(-saving)} more than the cache reads saved.")
    for line in cache_warnings(rows, key):
        out.print(line)


def cache_warnings(rows: list[dict[str, Any]], key: str) -> list[str]:
    """A warning for each group whose cache figures may be under-reported, with the reason;
    and how to fill the savings of results stored before batchrun kept them."""
    warnings = [
        f"[yellow]Warning:[/] {row[key]}: cache reads may be under-reported. {row['cache_trust']}"
        for row in rows
        if row.get("cache_trust")
    ]
    if any(row.get("saving_unknown") for row in rows):
        warnings.append(
            "unknown: results stored before batchrun kept their cache-write cost and what they "
            "would have cost without the cache; `batchrun reprice` computes both."
        )
    return warnings


def print_estimate(out: Console, estimate: Estimate, title: str) -> None:
    """The estimate's table, the same costs with the expected cache reads (when any are
    expected), and what those assumed."""
    out.print(estimate_table(estimate, title))
    cached = estimate_cache_table(estimate)
    if cached is not None:
        out.print(cached)
    for note in [history_note(estimate), *estimate_notes(estimate)]:
        out.print(note, highlight=False)


def history_note(estimate: Estimate) -> str:
    """Which past results the expected output comes from: those of the run's own origin."""
    if any(m.history_simulated for m in estimate.models.values()):
        return (
            "Expected output: each model's mean output over this database's past simulated "
            "results (this estimate is for the built-in simulator; nothing is billed)."
        )
    return (
        "Expected output: each model's mean output over this database's past real results "
        "(sent to MiniMax). Simulated results are not used: the simulator's answer lengths are "
        "made up and say nothing of what the real model writes."
    )


def _history_cell(row: ModelEstimate) -> str:
    """The notes column's word on the expected output: how many past results it is from."""
    kind, other = ("simulated", "real") if row.history_simulated else ("real", "simulated")
    if row.history:
        return f"expected output from {row.history:,} {kind} results"
    unused = f" ({row.unused_history:,} {other} results not used)" if row.unused_history else ""
    return f"no past {kind} results: no expected value{unused}"


def estimate_table(estimate: Estimate, title: str) -> Table:
    """Per model and in total: requests, tokens and cost as ranges and expected values."""
    table = Table(title=title)
    columns = ("model", "requests", "input tokens", "output tokens", "expected output",
               "cost", "expected cost", "notes")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "notes") else "right")
    for row in _estimate_rows(estimate):
        table.add_row(*_estimate_cells(row))
    return table


def estimate_cache_table(estimate: Estimate) -> Table | None:
    """The same requests with their expected cache reads: the tokens read and the cost range
    and expected cost with them, beside the cost without; None when no reads are expected."""
    if not _expects_cache(estimate):
        return None
    table = Table(title="With the expected prompt-cache reads (see below: not guaranteed)")
    columns = ("model", "input tokens", "expected cache reads", "cost without cache",
               "cost with cache", "expected with cache")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in _estimate_rows(estimate):
        table.add_row(*_cached_cells(row))
    return table


def _estimate_rows(estimate: Estimate) -> list[ModelEstimate]:
    rows = [*estimate.models.values()]
    return [*rows, estimate.total()] if len(rows) > 1 else rows


def estimate_notes(estimate: Estimate) -> list[str]:
    """What the cost with cache assumed, said under the estimate's table."""
    models = estimate.models.values()
    least = sorted({m.cache_min_tokens for m in models if m.cache_min_tokens})
    lives = sorted({m.cache_ttl_seconds or 0 for m in models if m.cache_min_tokens})
    if not least:
        return []  # no model expects cache reads at all (the catalog says so)
    if not _expects_cache(estimate):
        return [
            "No cache reads expected: no line shares a prefix of at least "
            f"{_tokens_phrase(least)} (tools, system, leading messages) with an earlier line of "
            "the same model."
        ]
    notes = [
        "Cost with cache assumes MiniMax's passive prompt cache serves each prefix of at least "
        f"{_tokens_phrase(least)} (tools, then system, then leading messages, as MiniMax matches "
        "them) that an earlier line sent to the same model, read at the model's cache-read "
        f"price, with the batch running within the cache's lifetime ({_lifetime(lives)} from a "
        "prefix's last use, assumed: MiniMax states 5 minutes for cache_control marks only). "
        "Not guaranteed: MiniMax decides what it keeps; the cost without cache is the safe figure."
    ]
    notes += [
        f"{m.model} has no cache-read price: its cost with cache is unpriced."
        for m in estimate.models.values()
        if m.cache_unpriced
    ]
    return notes


def _expects_cache(estimate: Estimate) -> bool:
    return any(m.expected_cache_read_tokens for m in estimate.models.values())


def _lifetime(lives: list[int]) -> str:
    return eta_text(lives[0]) if len(lives) == 1 else "the model's cache_ttl_seconds"


def _tokens_phrase(least: list[int]) -> str:
    return f"{least[0]:,} tokens" if len(least) == 1 else "the model's cache_min_tokens"


def _cached_cells(row: ModelEstimate) -> list[str]:
    low, high = row.cached_cost_min_nanos, row.cached_cost_max_nanos
    mid = row.cached_cost_expected_nanos
    reads = row.expected_cache_read_tokens
    share = f" ({reads / row.input_tokens:.0%})" if reads and row.input_tokens else ""
    unpriced = low is None or high is None
    return [
        row.model,
        f"{row.input_tokens:,}" + ("*" if row.estimated else ""),
        f"{reads:,}{share}",
        f"{usd(row.cost_min_nanos)} - {usd(row.cost_max_nanos)}",
        "unpriced" if unpriced else f"{usd(low)} - {usd(high)}",
        "unpriced" if unpriced else usd(mid) if mid is not None else "-",
    ]


def _estimate_cells(row: ModelEstimate) -> list[str]:
    notes = []
    if row.estimated:
        notes.append(f"{row.estimated:,} inputs estimated locally")
    if row.unpriced:
        notes.append(f"{row.unpriced:,} unpriced")
    if row.invalid:
        notes.append(f"{row.invalid:,} over the context window or output cap")
    if row.model != "total":
        notes.append(_history_cell(row))
    expected_output = row.expected_output_tokens
    return [
        row.model,
        f"{row.requests:,}",
        f"{row.input_tokens:,}" + ("*" if row.estimated else ""),
        f"0 - {row.max_output_tokens:,}",
        f"{expected_output:,}" if expected_output is not None else "-",
        f"{usd(row.cost_min_nanos)} - {usd(row.cost_max_nanos)}",
        usd(row.cost_expected_nanos) if row.cost_expected_nanos is not None else "-",
        "; ".join(notes),
    ]


def print_batch_cache(out: Console, summary: pl.DataFrame) -> None:
    """A batch's prompt-cache table per model with the batch's total (``status`` and the end of
    a run)."""
    from batchrun.analytics import cache_total, real, simulated  # noqa: PLC0415

    for origin, label in ((real, ""), (simulated, ", simulated results")):
        rows = origin(summary)
        if rows.is_empty():
            continue
        total = cache_total(rows, also=("succeeded", "unpriced")).row(0, named=True)
        print_cache(
            out,
            rows.to_dicts(),
            total,
            key="model",
            results="succeeded",
            title=f"Prompt cache{label} (MiniMax caches long prompt prefixes on its own)",
            total_label="all models",
        )
