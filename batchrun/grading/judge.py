"""A model as judge: each stored answer and a rubric go to a chosen model, which replies a score.

The judge's calls are a batch of their own ("judge batch"), stored and run by the same runner as
any batch: the same limits, retries, pre-check, costs, budget cap, crash safety and resume. Its
settings name the batch it judges (``judge_of``). Judging the same batch with the same model,
rubric and max_tokens again continues that judge batch: finished judge calls are not sent again
(their replies are parsed again), and only answers it has not judged yet are added.

Each judge grade keeps the judge call's cost apart from the answer's (``judge_cost_nanos``), so
a batch's answers cost and its judging cost are reported separately.

The reply is parsed tolerantly (``parse_judge_reply``): a JSON object ``{"score": .., "reason":
..}`` anywhere in the reply, else a "score: 7/10" phrase. A reply without a usable score, or a
judge call that failed, becomes a grade with an error and no score, never a crash.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.api.endpoint import Deadlines, Endpoint
from batchrun.catalog import Catalog
from batchrun.config import JUDGE_MAX_TOKENS
from batchrun.grading.graders import Grade, extract_json
from batchrun.jobs import JobSpec
from batchrun.plan.planner import unique_name
from batchrun.run.progress import RunProgress
from batchrun.status import BatchStatus, RequestStatus
from batchrun.store import redact_url

if TYPE_CHECKING:
    from batchrun.run.report import RunReport
    from batchrun.run.settings import RunSettings
    from batchrun.store import BatchInfo, Store

PASS_THRESHOLD = 0.5  # a judge's score at or above this passes, unless it says "passed"
_MAX_REASON = 500
_SCORE_PHRASE = re.compile(
    r"\bscore\b[\s*:=]*(?:(?:is|of)\s+)?(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+))?",
    re.IGNORECASE,
)

PROMPT = """You are grading one answer to a question. Apply the rubric to the answer.
Reply with only a JSON object: {{"score": <a number from 0 to 1>, "reason": "<one sentence>"}}.

Rubric:
{rubric}

Question:
{question}

Answer to grade:
{answer}
"""


class JudgeReplyError(ValueError):
    """A judge's reply that holds no usable score."""


def judge_grader(model: str) -> str:
    """The grader name of a judge model: its grades replace only its own earlier ones."""
    return f"judge:{model}"


def parse_judge_reply(text: str) -> Grade:
    """The judge's grade from its reply; raise JudgeReplyError when there is no usable score.

    A score above 1 is read as out of 10 (up to 10) or out of 100 (up to 100); "7/10" and
    "7 out of 10" use their own scale. ``passed`` comes from a boolean "passed" (or "pass") in
    the JSON when there is one, else from score >= 0.5.
    """
    found = extract_json(text)
    value = found[0] if found is not None else None
    if isinstance(value, dict) and "score" in value:
        score = _scaled(value["score"], None)
        reason = value.get("reason")
        verdict = value.get("passed", value.get("pass"))
        passed = verdict if isinstance(verdict, bool) else score >= PASS_THRESHOLD
        shown = reason.strip() if isinstance(reason, str) and reason.strip() else _first_line(text)
        return Grade(score=score, passed=passed, reason=shown[:_MAX_REASON])
    phrase = _SCORE_PHRASE.search(text)
    if phrase is None:
        raise JudgeReplyError(f"no score in the judge's reply: {_first_line(text)!r}")
    score = _scaled(phrase.group(1), phrase.group(2))
    return Grade(score=score, passed=score >= PASS_THRESHOLD, reason=_first_line(text))


def _scaled(raw: Any, out_of: str | None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise JudgeReplyError(f"the judge's score is not a number: {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise JudgeReplyError(f"the judge's score is not a number: {raw!r}") from None
    scale = float(out_of) if out_of else 1.0 if value <= 1 else 10.0 if value <= 10 else 100.0
    if not (0 <= value <= scale) or scale <= 0:
        raise JudgeReplyError(f"the judge's score {raw!r} is outside 0..1 (or 0..10, 0..100)")
    return value / scale


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:_MAX_REASON]
    return ""


def question_of(params: Mapping[str, Any]) -> str:
    """The question an answer replies to: the text of the job's last user message."""
    users = [m for m in params.get("messages") or () if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    return str(content)


def judge_prompt(rubric: str, question: str, answer: str) -> str:
    """The one user message a judge receives: the rubric first, then question and answer."""
    return PROMPT.format(rubric=rubric.strip(), question=question.strip(), answer=answer.strip())


@dataclass(frozen=True, kw_only=True)
class JudgeOptions:
    """Who judges, by which rubric, and how the judge batch runs."""

    model: str
    rubric: str
    settings: RunSettings
    deadlines: Deadlines
    max_tokens: int = JUDGE_MAX_TOKENS
    max_cost_nanos: int | None = None


@dataclass(frozen=True, kw_only=True)
class JudgeOutcome:
    """What judging did: the judge batch, how its run ended, and the grade rows."""

    judge_batch: BatchInfo
    report: RunReport
    progress: RunProgress
    grades: list[dict[str, Any]]


def judge_digest(batch_id: str, options: JudgeOptions) -> str:
    """What identifies a judge batch: the judged batch, the model, rubric and max_tokens."""
    key = orjson.dumps([batch_id, options.model, options.rubric, options.max_tokens])
    return hashlib.sha256(b"batchrun-judge\0" + key).hexdigest()


def prepare_judge_batch(
    store: Store, batch: BatchInfo, options: JudgeOptions, endpoint: Endpoint
) -> BatchInfo:
    """The judge batch for ``batch``: continued if it exists, with any answer it lacks added."""
    digest = judge_digest(batch.id, options)
    judge = store.find_resumable(digest, [options.model])
    known: set[str] = set()
    if judge is None:
        judge = _create_judge_batch(store, batch, options, endpoint, digest)
    else:
        known = {row["custom_id"] for row in store.export_rows(judge)}
    specs = judge_specs(store.grading_rows(batch.id), options, skip=known)
    if specs:
        store.add_jobs(judge.id, specs, [options.model])
        store.set_batch(judge.id, status=BatchStatus.RUNNING, finished_at=None)
    return store.find_batch(judge.id)


def judge_specs(
    rows: Iterable[Mapping[str, Any]], options: JudgeOptions, skip: Collection[str] = ()
) -> list[JobSpec]:
    """One judge job per answer (custom_id ``r<request id>``), skipping those already there."""
    specs = []
    for number, row in enumerate(rows, 1):
        custom_id = f"r{row['request_id']}"
        if custom_id in skip:
            continue
        prompt = judge_prompt(options.rubric, question_of(row["params"]), row.get("text") or "")
        messages = [{"role": "user", "content": prompt}]
        specs.append(
            JobSpec(
                line_no=number,
                custom_id=custom_id,
                params={"max_tokens": options.max_tokens, "messages": messages},
                model=options.model,
                invalid_for={},
                content_hash=hashlib.sha256(orjson.dumps({"messages": messages})).hexdigest(),
            )
        )
    return specs


def _create_judge_batch(
    store: Store, batch: BatchInfo, options: JudgeOptions, endpoint: Endpoint, digest: str
) -> BatchInfo:
    batch_id = uuid.uuid4().hex[:12]
    name = unique_name(f"{batch.name}.judge-{options.model}", store)
    store.create_batch(
        {
            "id": batch_id,
            "name": name,
            "source_path": f"judge of batch {batch.name} ({batch.id})",
            "source_sha256": digest,
            "models": [options.model],
            "status": BatchStatus.RUNNING,
            "simulated": endpoint.simulated,
            "base_url": redact_url(endpoint.base_url),
            "settings": {
                "judge_of": batch.id,
                "judge_model": options.model,
                "max_tokens": options.max_tokens,
                "rubric_sha256": hashlib.sha256(options.rubric.encode()).hexdigest(),
            },
            "jobs_total": 0,
            "lines_invalid": 0,
        }
    )
    return store.find_batch(batch_id)


async def run_judge(
    *,
    store: Store,
    catalog: Catalog,
    batch: BatchInfo,
    endpoint: Endpoint,
    options: JudgeOptions,
    display: Callable[[RunProgress], object] | None = None,
) -> JudgeOutcome:
    """Judge every stored answer of ``batch`` and store the grades (grader ``judge:MODEL``)."""
    # Loaded here: the runner needs the SDK, which only commands that send requests load.
    from batchrun.run.execute import run_batch  # noqa: PLC0415
    from batchrun.run.report import finish_batch  # noqa: PLC0415

    judge = prepare_judge_batch(store, batch, options, endpoint)
    report, progress = await run_batch(
        store=store,
        catalog=catalog,
        batch=judge,
        endpoint=endpoint,
        settings=options.settings,
        deadlines=options.deadlines,
        display=display,
        max_cost_nanos=options.max_cost_nanos,
    )
    finish_batch(store, judge.id, report)
    rows = judge_grades(store.export_rows(judge), options.model)
    store.replace_grades(batch.id, judge_grader(options.model), rows)
    return JudgeOutcome(
        judge_batch=store.find_batch(judge.id), report=report, progress=progress, grades=rows
    )


def judge_grades(judge_rows: Iterable[Mapping[str, Any]], model: str) -> list[dict[str, Any]]:
    """Grade rows from the judge batch's requests (as ``Store.export_rows`` gives them)."""
    return [_judge_grade(row, model) for row in judge_rows]


def _judge_grade(row: Mapping[str, Any], model: str) -> dict[str, Any]:
    base = {
        "request_id": int(str(row["custom_id"])[1:]),
        "judge_model": model,
        "judge_request_id": row.get("request_id"),
        "judge_cost_nanos": row.get("cost_nanos"),
    }
    if row["status"] != RequestStatus.SUCCEEDED:
        why = _call_problem(row)
        return {**base, "score": None, "passed": None, "reason": why, "error": why}
    try:
        verdict = parse_judge_reply(row.get("text") or "")
    except JudgeReplyError as exc:
        return {**base, "score": None, "passed": None, "reason": str(exc), "error": str(exc)}
    return {
        **base,
        "score": verdict.score,
        "passed": verdict.passed,
        "reason": verdict.reason,
        "error": None,
    }


def _call_problem(row: Mapping[str, Any]) -> str:
    status = row["status"]
    if status == RequestStatus.PENDING:
        return "the judge call has not finished; run batchrun grade --judge again to continue"
    detail = row.get("error_message") or row.get("error_type") or "no detail"
    return f"the judge call {status}: {detail}"
