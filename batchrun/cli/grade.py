"""``batchrun grade``: grade a batch's stored answers, by their expectations and optionally by a
judge model, then show quality next to cost and speed per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from batchrun.cli import options as opt
from batchrun.cli.display import ProgressDisplay
from batchrun.cli.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from batchrun.cli.output import console
from batchrun.cli.startup import load_sender
from batchrun.config import JUDGE_MAX_TOKENS, read_environment
from batchrun.exceptions import ConfigError
from batchrun.pricing import parse_usd, usd
from batchrun.run.launch import limit_settings, open_endpoint
from batchrun.run.settings import RunSettings
from batchrun.status import BatchStatus

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from batchrun.catalog import Catalog
    from batchrun.store import BatchInfo, Store

_MAX_RUBRIC_BYTES = 64 * 1024


def grade_command(
    batch_ref: Annotated[str, typer.Argument(metavar="BATCH", help="Batch id or name.")],
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="Also have this model grade each answer by --rubric (its calls are a batch of "
            "their own, with the same limits and costs; their cost is shown apart).",
            show_default=False,
        ),
    ] = None,
    rubric: Annotated[
        Path | None,
        typer.Option(
            "--rubric",
            help="A text file: what a good answer is, for --judge.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    judge_max_tokens: Annotated[
        int, typer.Option("--judge-max-tokens", min=1, help="max_tokens of each judge call.")
    ] = JUDGE_MAX_TOKENS,
    db: opt.Db = None,
    catalog: opt.CatalogFile = None,
    base_url: opt.BaseUrl = None,
    concurrency: opt.Concurrency = None,
    rpm: opt.Rpm = None,
    tpm: opt.Tpm = None,
    simulate: opt.Simulate = False,
    sim_time_scale: opt.SimTimeScale = 1.0,
    sim_profile: opt.SimProfile = None,
    max_attempts: opt.MaxAttempts = opt.MAX_ATTEMPTS,
    idle_timeout: opt.IdleTimeout = opt.IDLE_TIMEOUT,
    timeout: opt.Timeout = opt.TIMEOUT,
    quota_wait: opt.QuotaWait = opt.QUOTA_WAIT,
    max_cost: opt.MaxCost = None,
) -> None:
    """Grade BATCH's answers by each job's "expect", and with --judge by a model; show pass
    rates (95% interval), cost per correct answer and speed per model.

    Grading reads the stored answers: it never sends them again. Grading again replaces the
    earlier grades of the same grader.
    """
    out = console()
    if (judge is None) != (rubric is None):
        raise ConfigError("--judge and --rubric go together: name the judge model and its rubric")
    loaded = opt.open_catalog(catalog)
    rubric_text = None
    if judge is not None and rubric is not None:  # checked before anything is graded
        loaded.get(judge)  # UnknownModelError lists the known models
        rubric_text = _read_rubric(rubric)
    store = opt.open_store(db)
    batch = store.find_batch(batch_ref)
    graded = grade_expectations(store, batch, out)
    code = EXIT_OK
    if judge is not None and rubric_text is not None:
        sending = opt.connection(
            db=db, catalog=catalog, base_url=base_url, concurrency=concurrency, rpm=rpm, tpm=tpm,
            simulate=simulate, sim_time_scale=sim_time_scale, sim_profile=sim_profile,
        max_attempts=max_attempts,
            idle_timeout=idle_timeout, timeout=timeout, quota_wait=quota_wait,
            max_cost_nanos=parse_usd(max_cost),
        )  # fmt: skip
        judging = _Judging(
            model=judge, rubric=rubric_text, max_tokens=judge_max_tokens, sending=sending
        )
        code = _judge(store, loaded, batch, judging, out)
    elif graded == 0:
        out.print(
            'No answer to grade: add "expect" to the job lines (see the README, "Grading '
            'answers"), or grade with a model: --judge MODEL --rubric FILE.'
        )
    print_quality(store, batch, out)
    raise typer.Exit(code)


@dataclass(frozen=True, kw_only=True)
class _Judging:
    """The judge's settings from the command line."""

    model: str
    rubric: str
    max_tokens: int
    sending: opt.Connection  # endpoint, limits, deadlines, retries and budget


def _read_rubric(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"--rubric {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--rubric {path}: cannot read the file: {exc.strerror or exc}") from exc
    if len(data) > _MAX_RUBRIC_BYTES:
        raise ConfigError(
            f"--rubric {path}: the rubric is {len(data):,} bytes; keep it under "
            f"{_MAX_RUBRIC_BYTES:,} (it is sent with every answer)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--rubric {path}: not UTF-8 text; save it as UTF-8") from None
    if not text.strip():
        raise ConfigError(f"--rubric {path}: the file is empty; write what a good answer is")
    return text


def _judge(
    store: Store, catalog: Catalog, batch: BatchInfo, judging: _Judging, out: Console
) -> int:
    load_sender()
    from batchrun.grading.judge import JudgeOptions, run_judge  # noqa: PLC0415 - only when used
    from batchrun.sim.loop import run_fast  # noqa: PLC0415

    options = JudgeOptions(
        model=judging.model,
        rubric=judging.rubric,
        max_tokens=judging.max_tokens,
        settings=RunSettings(
            limits=limit_settings(catalog, [judging.model], judging.sending.limits),
            retry=judging.sending.retry,
        ),
        deadlines=judging.sending.deadlines,
        max_cost_nanos=judging.sending.max_cost_nanos,
    )
    with open_endpoint(read_environment(), judging.sending.endpoint) as endpoint:
        if endpoint.simulated:
            out.print("[bold yellow]No API key: the judge is batchrun's simulator.[/]")
        with ProgressDisplay(out) as display:
            outcome = run_fast(
                run_judge(
                    store=store,
                    catalog=catalog,
                    batch=batch,
                    endpoint=endpoint,
                    options=options,
                    display=display,
                )
            )
    errors = sum(1 for row in outcome.grades if row["error"] is not None)
    out.print(
        f"Judged {len(outcome.grades):,} answers with {judging.model} in judge batch "
        f"[bold]{outcome.judge_batch.name}[/]"
        + (f"; {errors:,} without a score (see the reasons)" if errors else "")
        + "."
    )
    if outcome.report.budget_reached:
        out.print("[yellow]Budget reached:[/] some answers were not judged; raise --max-cost.")
    for model, reason in outcome.report.stopped_models.items():
        out.print(f"[red]Stopped sending to {model}[/]: {reason}", highlight=False)
    if outcome.report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if outcome.judge_batch.status != BatchStatus.COMPLETED else EXIT_OK


def grade_expectations(store: Store, batch: BatchInfo, out: Console) -> int:
    """Grade a batch's stored answers by their expect, say how many; return that number."""
    from batchrun.grading.apply import grade_batch  # noqa: PLC0415 - loaded only when used

    done = grade_batch(store, batch.id)
    out.print(
        f"Graded {done.graded:,} answers of batch [bold]{batch.name}[/] by their expect"
        + (f" ({done.skipped:,} without one)" if done.skipped else "")
        + "."
    )
    return done.graded


def print_quality(store: Store, batch: BatchInfo, out: Console) -> None:
    """The quality table of a batch's grades, and its answers' and judging's cost."""
    from batchrun.grading.report import grades_frame, quality_frame  # noqa: PLC0415 - polars

    quality = quality_frame(grades_frame(store.grade_rows(batch.id)))
    if quality.is_empty():
        return
    out.print(quality_table(quality, f"Quality of batch {batch.name}"))
    out.print(
        f"Answers cost {usd(store.batch_spend(batch.id))}; judging cost "
        f"{usd(store.judge_spend(batch.id))} (charged to this batch, kept apart)."
    )


def quality_table(quality: pl.DataFrame, title: str) -> Table:
    """Per grader and model: pass rate with its 95% interval, cost per correct answer, speed."""
    table = Table(title=title)
    columns = ("grader", "model", "graded", "passed", "pass rate (95% CI)", "mean score",
               "errors", "cost/correct", "output tps p50", "judge cost")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("grader", "model") else "right")
    for row in quality.iter_rows(named=True):
        table.add_row(*_quality_cells(row))
    return table


def _quality_cells(row: dict[str, Any]) -> list[str]:
    rate = row["pass_rate"]
    shown_rate = (
        f"{rate:.0%} ({row['ci_low']:.0%}-{row['ci_high']:.0%})" if rate is not None else "-"
    )
    per_correct = row["cost_per_correct_nanos"]
    tps = row["output_tps_p50"]
    return [
        row["grader"],
        row["model"],
        f"{row['graded']:,}",
        f"{row['passed']:,}",
        shown_rate,
        f"{row['mean_score']:.2f}" if row["mean_score"] is not None else "-",
        f"{row['errors']:,}",
        usd(round(per_correct)) if per_correct is not None else "-",
        f"{tps:.1f}" if tps is not None else "-",
        usd(row["judge_cost_nanos"]) if row["judge_cost_nanos"] is not None else "-",
    ]
