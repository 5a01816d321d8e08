"""Pure polars functions over frames read from the store: the numbers summaries and the
dashboard show.

Definitions (stated wherever a number is shown, see ``DEFINITIONS``):
- latency: done - sent, the whole call;
- TTFT: first content token (thinking, text or tool input) - sent; TTFT (text): first token of
  visible text (reasoning leaked into the text as ``<think>...</think>`` is thinking, not text);
- output tps: output_tokens / (last token - first token), MiniMax's own definition, which leaves
  out the time to first token;
- end-to-end tps: output_tokens / (done - sent);
- error rate: failed requests (errored or invalid) / finished requests (succeeded, errored or
  invalid); pending and canceled requests are not finished;
- retries: attempts beyond the first;
- think leaked / empty replies: results flagged ``think_leaked`` (reasoning sent as text) or
  ``empty_reply`` (a reply with no content), counted per model;
- cost: the sum over priced results; results of a model without a price are counted as
  ``unpriced`` and never added as $0; cost per 1,000 requests and per million output tokens are
  over priced results only;
- prompt cache: hit rate = cache-read tokens / prompt tokens (input + cache read + cache
  creation); cached requests = results with a cache read; cache writes = cache-creation tokens and
  their priced cost; saving = uncached cost - cost over the results with both known (never from
  a missing price); under-reported = too many results expected to read from the cache reported
  none (``cache_trust_note``).

Two frames: the *requests frame* (one row per request, its result's timings, usage and cost
where it has one) for everything per model, batch or day; and the *results frame* (one row per
result) for spend reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from batchrun.api.stream import EMPTY_REPLY, THINK_LEAKED
from batchrun.status import FINISHED_REQUESTS, RequestStatus

CACHE_TRUST_MIN = 5  # results expected to read from the cache before any trust flag is raised

DEFINITIONS: dict[str, str] = {
    "latency": "Seconds from sending the request to the end of the answer (done - sent).",
    "TTFT": "Time to first token: seconds from sending to the first content token of any kind "
    "(thinking, text or tool input).",
    "TTFT (text)": "Seconds from sending to the first token of visible text (after any thinking, "
    "including reasoning the model leaked into the text as <think>...</think>).",
    "output tps": "Output tokens per second while generating: output tokens / (last token - first "
    "token). MiniMax's own definition; it leaves out the time to first token.",
    "end-to-end tps": "Output tokens / (done - sent): speed as the caller experiences it.",
    "error rate": "Failed requests (errored or invalid) / finished requests. Pending and canceled "
    "requests are not counted.",
    "retries": "Attempts beyond the first (each retry is one more call to the API).",
    "think leaked": "Answers whose text began with <think>...</think>: the model sent its "
    "reasoning as visible text. batchrun stores that part as thinking and grades, exports and "
    "shows only what follows </think>; output tokens (and output tps) still count all of it.",
    "empty replies": "Succeeded calls that returned no content at all (no blocks, or content: "
    "null): stored with an empty answer, which fails any expect check.",
    "cost": "Sum of the priced results, in USD. Results of a model without a price are counted "
    "as unpriced, never as $0.",
    "simulated cost": "What results from batchrun's built-in simulator would have cost at "
    "MiniMax's prices. Nothing was billed: it is always shown apart from real spend, never "
    "added to it.",
    "cost / 1k requests": "Mean cost of one priced result x 1,000: what 1,000 requests answered "
    "cost (a failed request has no result and costs nothing).",
    "cost / M output": "Cost of the priced results / their output tokens x 1,000,000.",
    "cache hit rate": "Cache-read tokens / all prompt tokens (input + cache read + cache write) "
    "of the results: the share of the prompt MiniMax served from its prompt cache, at the "
    "cache-read price. MiniMax caches long prompt prefixes on its own.",
    "cached requests": "Results that read at least one token from MiniMax's prompt cache.",
    "cache writes": "Prompt tokens MiniMax reported writing to its cache (cache creation) and "
    "what they cost at the cache-write price; unpriced where the model has no cache-write price. "
    "MiniMax-M3 never reports cache writes.",
    "cache saving": "What the priced results would have cost with every prompt token at the "
    "input price, minus what they cost (same day's price, tier and priority multiplier). Cache "
    "reads save; cache writes, dearer than input on some models, can make it negative. Never "
    "computed from a missing price; results stored before batchrun kept this figure count as "
    "'saving unknown' until `batchrun reprice` fills it.",
    "cache under-reported": "Flagged when at least "
    f"{CACHE_TRUST_MIN} results were expected to read from the cache (their prompt began with a "
    "long prefix sent to the same model minutes before) and more than half of them reported no "
    "cache read: MiniMax's streamed usage is known to report zero cache reads, so the hit rate "
    "and the saving may be higher than shown.",
    "p50 / p90 / p99": "Percentiles: half, 90% and 99% of the requests are at or below the value "
    "(linear interpolation).",
    "requests": "What was asked: one per job line and model, whatever became of it (pending, "
    "succeeded, errored, invalid or canceled). Every page counts requests this way.",
    "results": "Requests that got an answer back from the API (or the simulator), stored with "
    "its tokens, timings and cost: what is billed. A request still pending, or one that failed "
    "before any answer, has no result.",
    "n": "The number of results a percentile or median is taken over (those with the value: a "
    "request still pending, or failed, has no latency). A figure over a few results is a rough "
    "one.",
    "output tps slow tail": "For tokens per second low is slow, so the slow tail is the low "
    "end: p10 and p1 are the speeds 10% and 1% of the results are at or below (p90 and p99 "
    "would be the fast end).",
}

_TIMING = {
    "sent_at": pl.Float64,
    "first_token_s": pl.Float64,
    "first_text_s": pl.Float64,
    "last_token_s": pl.Float64,
    "done_s": pl.Float64,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "cache_read_tokens": pl.Int64,
    "cache_creation_tokens": pl.Int64,
    "cost_nanos": pl.Int64,
    "flags": pl.String,  # what was odd about the reply: think_leaked, empty_reply
    "expected_cache_tokens": pl.Int64,  # prompt tokens expected from the cache; null: not known
    "uncached_cost_nanos": pl.Int64,  # the cost with every prompt token at the input rate
    "cache_write_cost_nanos": pl.Int64,  # the part of cost_nanos paid for cache writes
    "simulated": pl.Boolean,  # from the built-in simulator: never real spend
}

RESULT_SCHEMA: dict[str, Any] = {"model": pl.String, "batch_id": pl.String, "batch_name": pl.String}
RESULT_SCHEMA.update(_TIMING)

# The columns, in order, of the two halves of Store.metric_rows.
REQUEST_COLUMNS: dict[str, Any] = {
    "request_id": pl.Int64,
    "batch_id": pl.String,
    "custom_id": pl.String,
    "model": pl.String,
    "status": pl.String,
    "attempts": pl.Int64,
    "error_type": pl.String,
    "error_message": pl.String,
}
RESULT_COLUMNS: dict[str, Any] = {"request_id": pl.Int64, "model": pl.String, **_TIMING}
BATCH_COLUMNS: dict[str, Any] = {
    "batch_id": pl.String,
    "batch_name": pl.String,
    "batch_simulated": pl.Boolean,
}

STATUSES = tuple(
    str(s)
    for s in (
        RequestStatus.SUCCEEDED,
        RequestStatus.ERRORED,
        RequestStatus.INVALID,
        RequestStatus.PENDING,
        RequestStatus.CANCELED,
    )
)  # the columns of per-status counts, in this order
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
DISTRIBUTED = ("latency_s", "ttft_s", "ttft_text_s", "output_tps")


def results_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Result rows (as the store returns them) as a frame with the metric columns added."""
    frame = pl.DataFrame(
        [{key: row.get(key) for key in RESULT_SCHEMA} for row in rows], schema=RESULT_SCHEMA
    )
    return with_metrics(frame)


def requests_frame(
    request_pages: Iterable[Sequence[Sequence[Any]]],
    result_pages: Iterable[Sequence[Sequence[Any]]],
    batches: Sequence[Mapping[str, Any]],
) -> pl.DataFrame:
    """The requests frame: each request (Store.metric_rows, in pages of rows) with its batch's
    name, whether it was simulated (its result's own mark; without a result, its batch's), its
    result's figures where it has one, and the metric columns."""
    names = pl.DataFrame(
        [(b["id"], b["name"], b["simulated"]) for b in batches], schema=BATCH_COLUMNS, orient="row"
    )
    frame = (
        _paged_frame(request_pages, REQUEST_COLUMNS)
        .join(names, on="batch_id", how="left")
        .join(_paged_frame(result_pages, RESULT_COLUMNS).drop("model"), on="request_id", how="left")
    )
    return (
        with_metrics(frame)
        .with_columns(
            retries=(pl.col("attempts") - 1).clip(lower_bound=0),
            simulated=pl.coalesce("simulated", "batch_simulated"),
        )
        .drop("batch_simulated")
    )


def _paged_frame(
    pages: Iterable[Sequence[Sequence[Any]]], schema: Mapping[str, Any]
) -> pl.DataFrame:
    frames = [pl.DataFrame(page, schema=schema, orient="row") for page in pages]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def summary_frame(
    result_pages: Iterable[Sequence[Sequence[Any]]],
    counts: Mapping[str, Mapping[str, int]],
    retries: Mapping[str, int],
    simulated: bool,
) -> pl.DataFrame:
    """model_metrics of one batch from its results alone (Store.result_metric_rows), its
    requests per model and status (Store.status_counts) and its retries per model
    (Store.retry_counts): the end-of-run summary and ``status``, which must not read a row per
    request of a million-request batch.

    One row per model and origin of its results, so simulated and real figures (cost above all)
    are never added together: a model some of whose results came from the simulator and some
    from MiniMax (a batch resumed against the other) has two rows. Its failed, pending and
    canceled requests and its retries, which have no origin of their own, are on the row of
    the batch's origin (``simulated``)."""
    results = with_metrics(_paged_frame(result_pages, RESULT_COLUMNS)).with_columns(
        status=pl.lit(str(RequestStatus.SUCCEEDED)),
        retries=pl.lit(0),
        simulated=pl.col("simulated").fill_null(simulated),
    )
    figures = model_metrics(results, by=("model", "simulated")).rename({"requests": "results"})
    figures = figures.drop(*STATUSES, "retries", "error_rate", "success_rate")
    rows = _origin_rows(figures, counts, retries, simulated)
    return (
        rows.join(figures.drop("results"), on=["model", "simulated"], how="left")
        .with_columns(*_rates())
        .sort("model", "simulated")
    )


def _origin_rows(
    figures: pl.DataFrame,
    counts: Mapping[str, Mapping[str, int]],
    retries: Mapping[str, int],
    simulated: bool,
) -> pl.DataFrame:
    """Requests per status and retries of each (model, origin) row of ``summary_frame``."""
    home = pl.DataFrame(
        [
            {"model": m, **{s: by.get(s, 0) for s in STATUSES}, "retries": retries.get(m, 0)}
            for m, by in counts.items()
        ],
        schema={"model": pl.String, **dict.fromkeys(STATUSES, pl.Int64), "retries": pl.Int64},
    ).with_columns(simulated=pl.lit(simulated))
    elsewhere = figures.filter(pl.col("simulated") != simulated).select(
        "model", "simulated", pl.col("results").cast(pl.Int64).alias("succeeded")
    )
    moved = elsewhere.group_by("model").agg(pl.col("succeeded").sum().alias("moved"))
    home = (
        home.join(moved, on="model", how="left")
        .with_columns(succeeded=pl.col("succeeded") - pl.col("moved").fill_null(0))
        .drop("moved")
    )
    others = elsewhere.with_columns(
        *[pl.lit(0, pl.Int64).alias(s) for s in STATUSES if s != "succeeded"],
        retries=pl.lit(0, pl.Int64),
    ).select(home.columns)
    rows = pl.concat([home, others]).with_columns(requests=pl.sum_horizontal(*STATUSES))
    return rows.filter(pl.col("requests") > 0)


def with_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    """Add latency, TTFT, output tps, end-to-end tps and the UTC day and hour of sending."""
    generating = pl.col("last_token_s") - pl.col("first_token_s")
    sent = pl.from_epoch(pl.col("sent_at"), time_unit="s")
    return frame.with_columns(
        latency_s=pl.col("done_s"),
        ttft_s=pl.col("first_token_s"),
        ttft_text_s=pl.col("first_text_s"),
        output_tps=pl.when(generating > 0).then(pl.col("output_tokens") / generating),
        e2e_tps=pl.when(pl.col("done_s") > 0).then(pl.col("output_tokens") / pl.col("done_s")),
        day=sent.dt.date(),
        hour=sent.dt.truncate("1h"),
    )


def priced_sum() -> pl.Expr:
    """The sum of the priced costs, null (not 0) when none of them is priced."""
    cost = pl.col("cost_nanos")
    return pl.when(cost.is_not_null().any()).then(cost.sum()).alias("cost_nanos")


def _percentiles(column: str, name: str) -> list[pl.Expr]:
    return [
        pl.col(column).quantile(q, "linear").alias(f"{name}_{label}") for label, q in PERCENTILES
    ]


def model_metrics(requests: pl.DataFrame, by: Sequence[str] = ("model",)) -> pl.DataFrame:
    """One row per group (model by default; or batch and model, day and model): requests by
    status, error rate, retries, latency, TTFT and tps percentiles, tokens, cost and the
    prompt-cache figures (hit rate, cached requests, cache writes and their cost, saving, trust
    note)."""
    status = pl.col("status")
    priced = pl.col("cost_nanos").is_not_null()
    frame = requests.group_by(list(by)).agg(
        pl.len().alias("requests"),
        *[(status == s).sum().alias(s) for s in STATUSES],
        pl.col("retries").sum(),
        *_flag_counts(),
        *_percentiles("latency_s", "latency"),
        *_percentiles("ttft_s", "ttft"),
        *_percentiles("ttft_text_s", "ttft_text"),
        *_percentiles("output_tps", "output_tps"),
        pl.col("e2e_tps").median().alias("e2e_tps_p50"),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        pl.col("cache_read_tokens").sum(),
        pl.col("cache_creation_tokens").sum(),
        *_cache_sums(),
        priced_sum(),
        ((status == RequestStatus.SUCCEEDED) & ~priced).sum().alias("unpriced"),
        priced.sum().alias("priced"),
        pl.col("output_tokens").filter(priced).sum().alias("priced_output"),
        *([] if "simulated" in by else [pl.col("simulated").any()]),
    )
    return (
        with_cache_figures(frame)
        .with_columns(
            *_rates(),
            cost_per_1k_nanos=pl.when(pl.col("priced") > 0).then(
                pl.col("cost_nanos") * 1000 / pl.col("priced")
            ),
            cost_per_m_output_nanos=pl.when(pl.col("priced_output") > 0).then(
                pl.col("cost_nanos") * 1_000_000 / pl.col("priced_output")
            ),
        )
        .sort(list(by))
    )


def totals(requests: pl.DataFrame) -> dict[str, Any]:
    """model_metrics' figures over all the requests that need no percentile: requests by
    status, error and success rates, input and output tokens. A headline's figures without
    sorting a million latencies."""
    frame = weighed(requests)
    status, n = pl.col("status"), pl.col("n")
    figures = frame.select(
        n.sum().alias("requests"),
        *[n.filter(status == s).sum().alias(s) for s in STATUSES],
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
    )
    return figures.with_columns(*_rates()).row(0, named=True)


# The sums frame: the requests frame's rows grouped, each row standing for ``n`` requests.
SUMS_SCHEMA: dict[str, Any] = {
    "batch_id": pl.String,
    "batch_name": pl.String,
    "model": pl.String,
    "status": pl.String,
    "simulated": pl.Boolean,
    "hour": pl.Datetime("us"),
    "day": pl.Date,
    "n": pl.Int64,  # the requests (for a succeeded row: the results) the row stands for
    "priced": pl.Int64,  # of those, the results with a cost
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "cache_read_tokens": pl.Int64,
    "cache_creation_tokens": pl.Int64,
    "cost_nanos": pl.Int64,  # the priced results' sum; null when none is priced
    # The prompt-cache sums (store/aggregates.py): 0 on a row without results.
    "cached_results": pl.Int64,  # results with a cache read
    "write_priced": pl.Int64,  # results with a cache-write cost
    "cache_write_cost_nanos": pl.Int64,
    "saving_known": pl.Int64,  # results with both a cost and an uncached cost
    "cache_saving_nanos": pl.Int64,  # uncached cost less cost, over those
    # The prompt-cache reads expected when the results were sent (``cache_trust_note``).
    "expected_cache_hits": pl.Int64,  # results expected to read from the cache
    "unreported_cache_hits": pl.Int64,  # of those, the ones that reported no read
    "expected_known": pl.Int64,  # results whose expected cache tokens are known
    "expected_cache_tokens": pl.Int64,  # their sum, over those
}
SUMS_CACHE = (
    "cached_results", "write_priced", "cache_write_cost_nanos", "saving_known",
    "cache_saving_nanos", "expected_cache_hits", "unreported_cache_hits", "expected_known",
    "expected_cache_tokens",
)  # fmt: skip


def sums_frame(
    aggregates: Sequence[Mapping[str, Any]],
    counts: Mapping[str, Mapping[str, Mapping[str, int]]],
    batches: Sequence[Mapping[str, Any]],
) -> pl.DataFrame:
    """The requests frame summed: one row per batch, model, UTC hour and origin of the results
    (the store's aggregates, status ``succeeded``) and one per batch, model and status of the
    requests without a result (``counts``: Store.status_counts per batch; no day). What needs no
    percentile (totals, spend over time, budget use) is the same from it as from the requests
    frame, at a few hundred rows instead of a million."""
    names = {b["id"]: (b["name"], bool(b["simulated"])) for b in batches}
    rows: list[dict[str, Any]] = []
    for a in aggregates:
        if not a["results"] or a["batch_id"] not in names:
            continue
        hour = datetime.fromtimestamp(a["hour"], tz=UTC).replace(tzinfo=None)
        rows.append({
            "batch_id": a["batch_id"], "batch_name": names[a["batch_id"]][0],
            "model": a["model"], "status": str(RequestStatus.SUCCEEDED),
            "simulated": bool(a["simulated"]), "hour": hour, "day": hour.date(),
            "n": a["results"], "priced": a["priced"],
            **{c: a[c] for c in ("input_tokens", "output_tokens", "cache_read_tokens",
                                 "cache_creation_tokens", *SUMS_CACHE)},
            "cost_nanos": a["cost_nanos"] if a["priced"] else None,
        })  # fmt: skip
    for batch_id, by_model in counts.items():
        if batch_id not in names:
            continue
        for model, by_status in by_model.items():
            for status, count in by_status.items():
                if status == RequestStatus.SUCCEEDED or not count:
                    continue  # the succeeded ones are the aggregates' results
                rows.append({
                    "batch_id": batch_id, "batch_name": names[batch_id][0], "model": model,
                    "status": status, "simulated": names[batch_id][1], "n": count, "priced": 0,
                    **dict.fromkeys(SUMS_CACHE, 0),
                })  # fmt: skip
    return pl.DataFrame(rows, schema=SUMS_SCHEMA)


def weighed(frame: pl.DataFrame) -> pl.DataFrame:
    """A requests frame with each row's weight (``n``: 1) and priced count, as a sums frame
    has them: the functions that take either read these two columns."""
    if "n" in frame.columns:
        return frame
    return frame.with_columns(
        n=pl.lit(1, pl.Int64), priced=pl.col("cost_nanos").is_not_null().cast(pl.Int64)
    )


def _sent() -> pl.Expr:
    """Rows of results (sent): a request without one has no day."""
    return pl.col("day").is_not_null()


def _unpriced() -> pl.Expr:
    return (pl.col("n") - pl.col("priced")).sum().alias("unpriced")


# The speed figures whose percentiles the dashboard shows, and the name of their sample count.
SAMPLED = {
    "latency_s": "latency",
    "ttft_s": "ttft",
    "ttft_text_s": "ttft_text",
    "output_tps": "output_tps",
    "e2e_tps": "e2e_tps",
}
# The slow end of output tps: the speed 10% and 1% of the results are at or below.
SLOW_TAIL = (("p10", 0.1), ("p1", 0.01))


def sample_figures(requests: pl.DataFrame, by: Sequence[str] = ("model",)) -> pl.DataFrame:
    """Per group (as model_metrics groups): how many results each speed percentile is taken
    over (``latency_n``, ``ttft_n``, ... : the values that are not null), and the slow tail of
    output tps (``output_tps_p10``, ``output_tps_p1``: low is slow, unlike latency's p90)."""
    tps = pl.col("output_tps")
    return (
        requests.group_by(list(by))
        .agg(
            *[pl.col(column).count().alias(f"{name}_n") for column, name in SAMPLED.items()],
            *[tps.quantile(q, "linear").alias(f"output_tps_{label}") for label, q in SLOW_TAIL],
        )
        .sort(list(by))
    )


def _cache_sums() -> list[pl.Expr]:
    """Per group, the sums and counts the prompt-cache figures are made of (see DEFINITIONS)."""
    read = pl.col("cache_read_tokens")
    write_cost = pl.col("cache_write_cost_nanos")
    saving = pl.col("uncached_cost_nanos") - pl.col("cost_nanos")  # null unless both are known
    expected = pl.col("expected_cache_tokens") > 0  # null (not known) counts as not expected
    return [
        (pl.col("input_tokens") + read + pl.col("cache_creation_tokens"))
        .sum()
        .alias("prompt_tokens"),
        (read > 0).sum().alias("cached_requests"),
        pl.when(write_cost.is_not_null().any())
        .then(write_cost.sum())
        .alias("cache_write_cost_nanos"),
        pl.when(saving.is_not_null().any()).then(saving.sum()).alias("cache_saving_nanos"),
        (pl.col("cost_nanos").is_not_null() & pl.col("uncached_cost_nanos").is_null())
        .sum()
        .alias("saving_unknown"),
        expected.sum().alias("expected_cache_hits"),
        (expected & (read == 0)).sum().alias("unreported_cache_hits"),
    ]


def with_cache_figures(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the cache hit rate and the trust note to a frame of ``_cache_sums`` per group."""
    notes = [
        cache_trust_note(expected, unreported)
        for expected, unreported in zip(
            frame["expected_cache_hits"], frame["unreported_cache_hits"], strict=True
        )
    ]
    prompt = pl.col("prompt_tokens")
    return frame.with_columns(
        cache_hit_rate=pl.when(prompt > 0).then(pl.col("cache_read_tokens") / prompt),
        cache_trust=pl.Series(notes, dtype=pl.String),
    )


CACHE_COUNTS = (
    "prompt_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cached_requests",
    "saving_unknown",
    "expected_cache_hits",
    "unreported_cache_hits",
)
CACHE_MONEY = ("cache_write_cost_nanos", "cache_saving_nanos")


def cache_total(groups: pl.DataFrame, also: Sequence[str] = ()) -> pl.DataFrame:
    """The prompt-cache figures of several groups together (a batch's models, say), from their
    rows: one row, with the counts in ``also`` summed too. Money stays null when no group has it.
    """
    money = [pl.col(c) for c in CACHE_MONEY]
    return groups.select(
        *[pl.col(c).fill_null(0).sum() for c in (*CACHE_COUNTS, *also)],
        *[pl.when(c.is_not_null().any()).then(c.sum()) for c in money],
    ).pipe(with_cache_figures)


def cache_trust_note(expected_hits: int, unreported: int) -> str | None:
    """Why a group's cache figures may be under-reported; None when they can be trusted.

    ``expected_hits``: results expected to read from the cache; ``unreported``: of those, the
    ones that reported no cache read. Flagged once there are ``CACHE_TRUST_MIN`` expected hits and
    more than half went unreported (MiniMax's streamed usage is known to report zero cache
    reads)."""
    if expected_hits < CACHE_TRUST_MIN or unreported * 2 <= expected_hits:
        return None
    return (
        f"{unreported:,} of {expected_hits:,} requests that repeated a long prompt prefix sent "
        "shortly before reported no cache read; MiniMax's streamed usage is known to under-report "
        "cache reads, so the hit rate and the saving may be higher than shown (and the prompt "
        "tokens and cost, which count only what was reported, lower than billed)."
    )


FLAG_COUNTS = {"think_leaked": THINK_LEAKED, "empty_replies": EMPTY_REPLY}  # column: flag


def _flag_counts() -> list[pl.Expr]:
    """Per group, how many results carry each flag (``flags`` is comma-separated)."""
    # A match of the whole item, not a split into lists: a tenth of the time at a million rows.
    return [
        pl.col("flags")
        .str.contains(f"(^|,){re.escape(flag)}(,|$)")
        .fill_null(False)
        .sum()
        .alias(name)
        for name, flag in FLAG_COUNTS.items()
    ]


def _rates() -> list[pl.Expr]:
    """Error rate (of finished requests) and success rate (of all), from the status counts."""
    finished = pl.col("succeeded") + pl.col("errored") + pl.col("invalid")
    failed = pl.col("errored") + pl.col("invalid")
    return [
        pl.when(finished > 0).then(failed / finished).alias("error_rate"),
        pl.when(pl.col("requests") > 0)
        .then(pl.col("succeeded") / pl.col("requests"))
        .alias("success_rate"),
    ]


def error_breakdown(requests: pl.DataFrame) -> pl.DataFrame:
    """Per model and error type: failed requests and their share of the model's finished ones."""
    finished = requests.filter(pl.col("status").is_in(list(FINISHED_REQUESTS)))
    totals = finished.group_by("model").agg(pl.len().alias("finished"))
    failed = (
        finished.filter(pl.col("status") != RequestStatus.SUCCEEDED)
        .with_columns(pl.col("error_type").fill_null("unknown"))
        .group_by("model", "error_type")
        .agg(pl.len().alias("requests"))
    )
    return (
        failed.join(totals, on="model")
        .with_columns(share=pl.col("requests") / pl.col("finished"))
        .sort("model", "requests", "error_type", descending=[False, True, False])
    )


def distribution(requests: pl.DataFrame, column: str) -> pl.DataFrame:
    """Per model, the box-plot figures of a metric: p5, p25, p50, p75, p95, mean and count.

    Computed here rather than in the browser, so a chart of a million results stays small.
    """
    values = pl.col(column)
    return (
        requests.filter(values.is_not_null())
        .group_by("model")
        .agg(
            *[values.quantile(q, "linear").alias(f"p{round(q * 100)}") for q in _BOX],
            values.mean().alias("mean"),
            pl.len().alias("count"),
        )
        .sort("model")
    )


_BOX = (0.05, 0.25, 0.5, 0.75, 0.95)


def spend_over_time(results: pl.DataFrame, every: str = "day") -> pl.DataFrame:
    """Priced cost per period (``hour`` or ``day``, UTC) and model, with each model's running total.

    A period in which a model's results were all unpriced has a null cost and a count of
    ``unpriced``; it never shows as $0. Its ``cumulative_nanos`` is null too (a chart breaks the
    line there instead of drawing a flat $0 step), and ``cumulative_unpriced`` counts the
    model's unpriced results so far, which the running total leaves out. Give it real results or
    simulated ones, not both: their costs must not be added together (``real`` and
    ``simulated`` split a frame).
    """
    key = {"hour": "hour", "day": "day"}[every]
    done = weighed(results).filter(_sent())
    return (
        done.group_by(key, "model")
        .agg(priced_sum(), _unpriced(), pl.col("n").sum().alias("results"))
        .sort(key, "model")
        .with_columns(
            cumulative_nanos=pl.when(pl.col("cost_nanos").is_not_null()).then(
                pl.col("cost_nanos").cum_sum().over("model")
            ),
            cumulative_unpriced=pl.col("unpriced").cum_sum().over("model"),
        )
        .rename({key: "period"})
    )


SPEND_KEYS = {"model": "model", "batch": "batch_name", "day": "day"}


def real(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of real results (sent to MiniMax): what was actually spent."""
    return frame.filter(~pl.col("simulated").fill_null(False))


def simulated(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of simulated results (the built-in simulator): priced as if real, never billed."""
    return frame.filter(pl.col("simulated").fill_null(False))


def spend(results: pl.DataFrame, by: str) -> pl.DataFrame:
    """Spend grouped by origin (``simulated`` false first, then true) and model, batch or UTC
    day: requests, tokens, priced cost, unpriced count, and the prompt-cache figures (as in
    ``model_metrics``).

    ``cost_nanos`` sums only priced requests; ``unpriced`` counts the others, which are never
    added as zero. Rows without a result (a requests frame's failures) are left out. Simulated
    and real results are never in one row: their rows are kept apart by ``simulated``.
    """
    key = SPEND_KEYS[by]
    frame = results.filter(pl.col("sent_at").is_not_null()).with_columns(
        pl.col("day").cast(pl.String), pl.col("simulated").fill_null(False)
    )
    return (
        frame.group_by("simulated", key)
        .agg(
            pl.len().alias("requests"),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
            pl.col("cache_read_tokens").sum(),
            pl.col("cache_creation_tokens").sum(),
            *_cache_sums(),
            priced_sum(),
            pl.col("cost_nanos").is_null().sum().alias("unpriced"),
        )
        .pipe(with_cache_figures)
        .sort("simulated", key)
        .rename({key: by})
    )


def spend_from_sums(sums: pl.DataFrame, by: str) -> pl.DataFrame:
    """``spend(results, by)`` from a sums frame (``sums_frame``): the same rows and figures,
    the cache-trust flag included, from a few hundred rows instead of a million."""
    key = SPEND_KEYS[by]
    frame = sums.filter(_sent()).with_columns(
        pl.col("day").cast(pl.String), pl.col("simulated").fill_null(False)
    )
    read, creation = pl.col("cache_read_tokens"), pl.col("cache_creation_tokens")
    return (
        frame.group_by("simulated", key)
        .agg(
            pl.col("n").sum().alias("requests"),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
            read.sum(),
            creation.sum(),
            (pl.col("input_tokens") + read + creation).sum().alias("prompt_tokens"),
            pl.col("cached_results").sum().alias("cached_requests"),
            _known_sum("cache_write_cost_nanos", "write_priced"),
            _known_sum("cache_saving_nanos", "saving_known"),
            (pl.col("priced") - pl.col("saving_known")).sum().alias("saving_unknown"),
            pl.col("expected_cache_hits").sum(),
            pl.col("unreported_cache_hits").sum(),
            priced_sum(),
            _unpriced(),
        )
        .pipe(with_cache_figures)
        .sort("simulated", key)
        .rename({key: by})
    )


def model_sums(sums: pl.DataFrame) -> pl.DataFrame:
    """Per model, ``model_metrics``' results (``succeeded``), input and prompt tokens and priced
    cost, from a sums frame: what the Spend page sets against a batch's estimate."""
    read, creation = pl.col("cache_read_tokens"), pl.col("cache_creation_tokens")
    return (
        sums.group_by("model")
        .agg(
            pl.col("n")
            .filter(pl.col("status") == RequestStatus.SUCCEEDED)
            .sum()
            .alias("succeeded"),
            pl.col("input_tokens").sum(),
            (pl.col("input_tokens") + read + creation).sum().alias("prompt_tokens"),
            priced_sum(),
        )
        .sort("model")
    )


def _known_sum(column: str, known: str) -> pl.Expr:
    """A money sum over the results that have it, null (not $0) when none has."""
    return pl.when(pl.col(known).sum() > 0).then(pl.col(column).sum()).alias(column)


def budget_use(batches: Sequence[Mapping[str, Any]], results: pl.DataFrame) -> pl.DataFrame:
    """Capped batches: their cap, priced spend, share of the cap used and unpriced results."""
    caps = pl.DataFrame(
        [
            {"batch_id": b["id"], "batch": b["name"], "cap_nanos": b["max_cost_nanos"]}
            for b in batches
            if b.get("max_cost_nanos") is not None
        ],
        schema={"batch_id": pl.String, "batch": pl.String, "cap_nanos": pl.Int64},
    )
    spent = (
        weighed(_of_batches(results, caps))
        .filter(_sent())
        .group_by("batch_id")
        .agg(priced_sum(), _unpriced())
    )
    return (
        caps.join(spent, on="batch_id", how="left")
        .with_columns(
            pl.col("unpriced").fill_null(0),
            used=pl.col("cost_nanos").fill_null(0) / pl.col("cap_nanos"),
        )
        .sort("batch")
    )


def _of_batches(results: pl.DataFrame, chosen: pl.DataFrame) -> pl.DataFrame:
    """The rows of the batches in ``chosen`` (a frame with batch_id): grouping a million rows
    of batches nobody asked about costs more than the filter."""
    return results.filter(pl.col("batch_id").is_in(chosen.get_column("batch_id").to_list()))


CAP_NEAR = 0.9  # a stopped batch with requests left and this share of its cap spent: at its cap


def cap_states(batches: Sequence[Mapping[str, Any]], results: pl.DataFrame) -> pl.DataFrame:
    """Capped batches as ``budget_use`` gives them, with what is left and where each stands.

    ``pending`` counts the requests not sent yet; ``left_nanos`` is the cap less the priced
    spend (negative when over); ``state`` is ``over its cap`` (spend past the cap),
    ``stopped at its cap`` (not running, requests pending, at least ``CAP_NEAR`` of the cap
    spent: the run stopped because the next request's worst case would pass it), ``stopped``
    (not running, requests pending, cap not near), ``running`` or ``within its cap``.
    """
    status = pl.DataFrame(
        [
            {"batch_id": b["id"], "status": str(b["status"])}
            for b in batches
            if b.get("max_cost_nanos") is not None
        ],
        schema={"batch_id": pl.String, "status": pl.String},
    )
    pending = (
        weighed(_of_batches(results, status))
        .group_by("batch_id")
        .agg(pl.col("n").filter(pl.col("status") == "pending").sum().alias("pending"))
    )
    running = pl.col("status").is_in(["running", "loading", "queued"])
    stopped = ~running & (pl.col("status") != "canceled") & (pl.col("pending") > 0)
    return (
        budget_use(batches, results)
        .join(status, on="batch_id", how="left")
        .join(pending, on="batch_id", how="left")
        .with_columns(pl.col("pending").fill_null(0))
        .with_columns(
            left_nanos=pl.col("cap_nanos") - pl.col("cost_nanos").fill_null(0),
            state=pl.when(pl.col("used") > 1)
            .then(pl.lit("over its cap"))
            .when(stopped & (pl.col("used") >= CAP_NEAR))
            .then(pl.lit("stopped at its cap"))
            .when(stopped)
            .then(pl.lit("stopped"))
            .when(running)
            .then(pl.lit("running"))
            .otherwise(pl.lit("within its cap")),
        )
    )


def estimate_vs_actual(
    estimates: Mapping[str, Mapping[str, Any]], metrics: pl.DataFrame
) -> pl.DataFrame:
    """The pre-run estimate of each model (as stored with the batch) next to what happened."""
    planned = pl.DataFrame(
        [{"model": model, **figures} for model, figures in estimates.items()],
        schema={
            "model": pl.String,
            "requests": pl.Int64,
            "input_tokens": pl.Int64,
            "cost_min_nanos": pl.Int64,
            "cost_expected_nanos": pl.Int64,
            "cost_max_nanos": pl.Int64,
        },
    ).rename({"requests": "estimated_requests", "input_tokens": "estimated_input_tokens"})
    actual = metrics.select(
        "model",
        pl.col("succeeded").alias("actual_results"),
        pl.col("input_tokens").alias("actual_input_tokens"),
        pl.col("cost_nanos").alias("actual_cost_nanos"),
    )
    return planned.join(actual, on="model", how="left").with_columns(
        actual_over_expected=pl.when(pl.col("cost_expected_nanos") > 0).then(
            pl.col("actual_cost_nanos") / pl.col("cost_expected_nanos")
        )
    )


def job_spread(requests: pl.DataFrame) -> pl.DataFrame:
    """Per job of one batch: how many models failed it and how far answer lengths differ.

    ``length_spread`` is (longest - shortest) / longest output in tokens over the models that
    answered, 0 when they agree or only one answered.
    """
    answered = pl.col("status") == RequestStatus.SUCCEEDED
    failed = pl.col("status").is_in([RequestStatus.ERRORED, RequestStatus.INVALID])
    tokens = pl.col("output_tokens").filter(answered)
    return (
        requests.group_by("custom_id")
        .agg(
            failed.sum().alias("failed_models"),
            answered.sum().alias("answered_models"),
            tokens.max().alias("longest"),
            tokens.min().alias("shortest"),
        )
        .with_columns(
            length_spread=pl.when(pl.col("longest") > 0)
            .then((pl.col("longest") - pl.col("shortest")) / pl.col("longest"))
            .otherwise(0.0)
        )
        .sort("custom_id")
    )
