"""Grades: what graders read of a batch's results, and the grades they store."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select

from batchrun.store.database import Database
from batchrun.store.results import results_with_jobs
from batchrun.store.tables import grades, jobs, results


class Grades:
    """The grades table, and the results it grades."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def grading_rows(self, batch_id: str) -> list[dict[str, Any]]:
        """A batch's results with what grading needs: the answer, the job's expect and params."""
        query = (
            results_with_jobs(
                results.c.request_id,
                results.c.model,
                results.c.custom_id,
                results.c.text,
                jobs.c.line_no,
                jobs.c.expect,
                jobs.c.params,
            )
            .where(results.c.batch_id == batch_id)
            .order_by(jobs.c.line_no, results.c.model)
        )
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def replace_grades(self, batch_id: str, grader: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store one grader's grades of these results, replacing its earlier ones; return count.

        Each row has request_id, score, passed, reason, and optionally error, judge_model,
        judge_request_id and judge_cost_nanos.
        """
        if not rows:
            return 0
        now = time.time()
        ids = [row["request_id"] for row in rows]
        new = [{"batch_id": batch_id, "grader": grader, "graded_at": now, **row} for row in rows]
        with self.database.begin() as connection:
            for start in range(0, len(ids), 500):
                connection.execute(
                    delete(grades).where(
                        grades.c.grader == grader, grades.c.request_id.in_(ids[start : start + 500])
                    )
                )
            connection.execute(insert(grades), new)
        return len(new)

    def grade_rows(self, batch_id: str, grader: str | None = None) -> list[dict[str, Any]]:
        """Grades of a batch (of one grader or all) with their result's model, timings and cost."""
        query = (
            select(
                grades,
                results.c.model,
                results.c.custom_id,
                results.c.sent_at,
                results.c.first_token_s,
                results.c.first_text_s,
                results.c.last_token_s,
                results.c.done_s,
                results.c.output_tokens,
                results.c.cost_nanos,
            )
            .join(results, results.c.request_id == grades.c.request_id)
            .where(grades.c.batch_id == batch_id)
            .order_by(grades.c.request_id, grades.c.grader)
        )
        if grader is not None:
            query = query.where(grades.c.grader == grader)
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def judge_spend(self, batch_id: str) -> int:
        """Nano-dollars spent judging a batch's answers (kept apart from the answers' cost)."""
        query = select(func.coalesce(func.sum(grades.c.judge_cost_nanos), 0)).where(
            grades.c.batch_id == batch_id
        )
        with self.database.connect() as connection:
            return int(connection.execute(query).scalar_one())
