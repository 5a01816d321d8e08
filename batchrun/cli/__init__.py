"""The ``batchrun`` command line: a thin Typer layer over the library, one module per group."""

from __future__ import annotations

import typer

from batchrun.cli import (
    batches,
    budgets,
    dashboard,
    grade,
    models,
    money,
    run,
    submit,
    unsaved,
    worker,
)
from batchrun.cli.errors import run_guarded
from batchrun.cli.startup import exiting_fast
from batchrun.sim import cli as sim_cli

app = typer.Typer(
    name="batchrun",
    help="Run JSONL batches against MiniMax's Anthropic-compatible API, compare models, "
    "and watch token spend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run.run_command)
app.command("resume")(run.resume_command)
app.command("estimate")(run.estimate_command)
app.command("submit")(submit.submit_command)
app.command("worker")(worker.worker_command)
app.command("cancel")(batches.cancel_command)
app.command("batches")(batches.batches_command)
app.command("status")(batches.status_command)
app.command("results")(batches.results_command)
app.command("import")(unsaved.import_command)
app.command("spend")(money.spend_command)
app.command("reprice")(money.reprice_command)
app.command("budgets")(budgets.budgets_command)
app.command("grade")(grade.grade_command)
app.add_typer(batches.db_app, name="db")
app.command("models")(models.models_command)
app.command("dashboard")(dashboard.dashboard_command)
app.command("sim")(sim_cli.sim_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``batchrun`` console script."""
    try:
        run_guarded(app, argv)
    finally:
        exiting_fast()
