"""Run batches at library level against a simulator: a job file in, the store and report out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.catalog import load_catalog
from batchrun.plan.planner import Plan, PlanOptions, create_batch, file_digest
from batchrun.run.execute import run_batch
from batchrun.run.launch import LimitOptions, limit_settings
from batchrun.run.progress import RunProgress
from batchrun.run.report import RunReport
from batchrun.run.retry import RetryPolicy
from batchrun.run.settings import RunSettings
from batchrun.sim import RunningSimulator
from batchrun.sim.loop import run_fast
from batchrun.store import Store, database_url
from batchrun.store.tables import attempts, requests, results
from tests.helpers import API_KEY


def write_jobs(path: Path, jobs: Sequence[dict[str, Any]]) -> Path:
    """A JSONL job file."""
    path.write_bytes(b"".join(orjson.dumps(job) + b"\n" for job in jobs))
    return path


def prompts(count: int, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """``count`` shorthand jobs with distinct prompts."""
    extra = {"model": model} if model else {}
    return [
        {"custom_id": f"job-{i:04d}", "prompt": f"Question number {i}?", **extra, **params}
        for i in range(count)
    ]


@dataclass
class Run:
    """A finished run and the store it wrote."""

    store: Store
    plan: Plan
    report: RunReport
    progress: RunProgress

    def rows(self, table: Any) -> list[dict[str, Any]]:
        """Every row of one table for this batch."""
        with self.store.engine.connect() as connection:
            query = select(table).where(table.c.batch_id == self.plan.batch.id)
            return [dict(row._mapping) for row in connection.execute(query)]

    def requests(self) -> list[dict[str, Any]]:
        return self.rows(requests)

    def results(self) -> list[dict[str, Any]]:
        return self.rows(results)

    def attempts(self) -> list[dict[str, Any]]:
        return self.rows(attempts)


def endpoint_for(sim: RunningSimulator, key: str = API_KEY) -> Endpoint:
    """The simulator as the runner's endpoint."""
    return Endpoint(base_url=f"{sim.base_url}/anthropic", api_key=key, simulated=True)


def run_jobs(
    tmp_path: Path,
    sim: RunningSimulator,
    jobs: Sequence[dict[str, Any]],
    models: Sequence[str] = (),
    *,
    limits: LimitOptions | None = None,
    deadlines: Deadlines | None = None,
    retry: RetryPolicy | None = None,
    precheck: bool = True,
    db: Path | None = None,
    key: str = API_KEY,
    max_cost_nanos: int | None = None,
    catalog_file: Path | None = None,
) -> Run:
    """Load ``jobs`` as a batch in a SQLite store under tmp_path and run it on ``sim``."""
    store = Store(database_url(str(db or tmp_path / "batchrun.db")))
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    catalog = load_catalog()
    plan = create_batch(
        store,
        catalog,
        path,
        PlanOptions(models=list(models)),
        digest=file_digest(path),
        base_url=sim.base_url,
        simulated=True,
        settings={},
    )
    report, progress = resume_run(
        store,
        plan,
        sim,
        limits=limits,
        deadlines=deadlines,
        retry=retry,
        precheck=precheck,
        key=key,
        max_cost_nanos=max_cost_nanos,
        catalog_file=catalog_file,
    )
    return Run(store=store, plan=plan, report=report, progress=progress)


def resume_run(
    store: Store,
    plan: Plan,
    sim: RunningSimulator,
    *,
    limits: LimitOptions | None = None,
    deadlines: Deadlines | None = None,
    retry: RetryPolicy | None = None,
    precheck: bool = True,
    key: str = API_KEY,
    max_cost_nanos: int | None = None,
    catalog_file: Path | None = None,
) -> tuple[RunReport, RunProgress]:
    """Run the batch's pending requests once more."""
    catalog = load_catalog(catalog_file)
    options = limits or LimitOptions(rpm={"*": 100_000}, tpm={"*": 10**12}, concurrency={"*": 16})
    settings = RunSettings(
        limits=limit_settings(catalog, store.batch_models(plan.batch.id), options),
        retry=retry or RetryPolicy(base_delay=0.01, max_delay=0.05),
        precheck=precheck,
        grace_seconds=1.0,
    )
    return run_fast(
        run_batch(
            store=store,
            catalog=catalog,
            batch=plan.batch,
            endpoint=endpoint_for(sim, key),
            settings=settings,
            deadlines=deadlines or Deadlines(idle=10, total=30),
            max_cost_nanos=max_cost_nanos,
        )
    )
