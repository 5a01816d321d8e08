"""Ratings: a person's verdict (good or bad) and comment on an answer, from the Outputs grid.

A rating is also stored as the answer's grade by the grader ``human`` (score 1 or 0, the
comment as its reason), in the same transaction: the pass rates, the quality charts, the grid's
verdicts and filters and ``batchrun grade``'s report count it like any other grader's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select

from batchrun.store.database import Database
from batchrun.store.tables import grades, ratings

HUMAN = "human"  # the grader a rating is stored as


class Ratings:
    """The ratings table, and the "human" grades it keeps in step."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def rate(self, batch_id: str, request_id: int, rating: int | None, comment: str) -> None:
        """Store a rating (1 good, -1 bad, None: none) and comment of one answer, replacing an
        earlier one; no rating and no comment removes it."""
        if rating not in (1, -1, None):
            raise ValueError(f"a rating is 1 (good), -1 (bad) or None, not {rating!r}")
        now = time.time()
        with self.database.begin() as connection:
            connection.execute(delete(ratings).where(ratings.c.request_id == request_id))
            connection.execute(
                delete(grades).where(grades.c.request_id == request_id, grades.c.grader == HUMAN)
            )
            if rating is None and not comment.strip():
                return
            connection.execute(
                insert(ratings).values(
                    request_id=request_id,
                    batch_id=batch_id,
                    rating=rating,
                    comment=comment,
                    rated_at=now,
                )
            )
            if rating is not None:
                connection.execute(
                    insert(grades).values(
                        request_id=request_id,
                        batch_id=batch_id,
                        grader=HUMAN,
                        score=1.0 if rating > 0 else 0.0,
                        passed=rating > 0,
                        reason=comment,
                        graded_at=now,
                    )
                )

    def of(self, request_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The ratings of these answers (a page of them), by request id."""
        if not request_ids:
            return {}
        query = select(ratings).where(ratings.c.request_id.in_(list(request_ids)))
        with self.database.connect() as connection:
            return {row.request_id: dict(row._mapping) for row in connection.execute(query)}

    def of_batch(self, batch_id: str) -> list[dict[str, Any]]:
        """Every rating of a batch's answers (for an export), in request order."""
        query = select(ratings).where(ratings.c.batch_id == batch_id).order_by(ratings.c.request_id)
        with self.database.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
