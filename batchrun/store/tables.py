"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` evolve them.

    batches      one per `batchrun run` / `submit`: file, models, settings, status, budget,
                 the key that makes it the one continued, a declined estimate
    jobs         one per valid line of the file: custom_id, params, line number
    line_errors  one per invalid line: where and why (the good lines still run)
    requests     one per (batch, custom_id, model): the unit of work and its status
    attempts     one per HTTP call: status, error, MiniMax code, duration (retries show here)
    results      at most one per request: usage, timings, content, cost, flags, cache figures
    grades       one per (result, grader): score, passed, reason; a judge's model and cost
    batch_aggregates  one per (batch, model, UTC hour, origin): the results' counts, tokens and
                 cost sums, kept by whatever writes results (store/aggregates.py)
    workers      one per `batchrun worker` process: its heartbeat (teams on one PostgreSQL store)
    pacers       one per model: the next free slot of its RPM / TPM pacer, shared by all workers,
                 and the model's back-off after a 429 / 529 (rate factor, pause), for every worker
    slots        one per model whose concurrency the team shares: the calls in flight now
    slot_holds   one per (worker, model): that worker's calls in flight, freed if it dies
    budgets      one per capped batch: cap, spent and reserved, for atomic reservations
    budget_holds one per (worker, batch): what that worker has reserved, freed if it dies
    model_budgets       one per (batch, model) that a period budget of that model alone caps
                 (a batch of several models): as budgets, shared by every process on the batch
    model_budget_holds  one per (worker, batch, model): as budget_holds

Times are UTC epoch seconds (float). Money is integer nano-dollars (1e-9 USD), exact to sum;
NULL cost means unpriced, never zero.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# The numeric columns of a result that every figure (latency, TTFT, tps, tokens, cost, prompt
# cache) needs.
RESULT_METRICS = (
    "sent_at",
    "first_token_s",
    "first_text_s",
    "last_token_s",
    "done_s",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_nanos",
    "flags",
    "expected_cache_tokens",
    "uncached_cost_nanos",
    "cache_write_cost_nanos",
    "simulated",  # from the built-in simulator: its cost is never real spend
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("source_path", Text, nullable=False),
    Column("source_sha256", String(64), nullable=False),
    Column("models", JSON, nullable=False),  # fan-out list, or [] when each line names its model
    Column("status", String(20), nullable=False),  # running, paused, completed, canceled
    Column("simulated", Boolean, nullable=False),
    Column("base_url", Text, nullable=False),  # never the key
    Column("settings", JSON, nullable=False),  # limits, retries, deadlines used
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("max_cost_nanos", BigInteger),
    Column("jobs_total", Integer, nullable=False, default=0),
    Column("lines_invalid", Integer, nullable=False, default=0),
    # The file content and models (plan.planner.batch_key) of a batch that is continued: one
    # batch holds it at a time (NULL once canceled), so two processes loading the same file at
    # once make one batch.
    Column("open_key", String(64)),
    Column("declined_at", Float),  # when its cost estimate was last declined; NULL: not now
    # Why its last run ended (batchrun.status.StopReason); NULL for batches from before 0012.
    Column("stop_reason", String(20)),
    Index(None, "open_key", unique=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("custom_id", String(256), nullable=False),
    Column("model", String(100)),  # the line's own model, if any
    Column("params", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("expect", JSON),
    UniqueConstraint("batch_id", "custom_id"),
    Index(None, "batch_id", "line_no"),
)

line_errors = Table(
    "line_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("custom_id", String(256)),
    Column("field", String(200)),
    Column("message", Text, nullable=False),
    Index(None, "batch_id", "line_no"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("custom_id", String(256), nullable=False),
    Column("model", String(100), nullable=False),
    # pending -> succeeded | errored | invalid | canceled
    Column("status", String(20), nullable=False),
    Column("input_tokens", Integer),  # from the pre-check
    Column("input_estimated", Boolean),  # True: a local estimate, not count_tokens
    Column("attempts", Integer, nullable=False, default=0),
    Column("error_type", String(100)),
    Column("error_message", Text),
    Column("error_status", Integer),
    Column("error_code", Integer),
    Column("updated_at", Float, nullable=False),
    Column("claimed_by", String(64)),  # worker that holds the request (PostgreSQL workers)
    Column("lease_until", Float),
    UniqueConstraint("batch_id", "custom_id", "model"),
    Index(None, "batch_id", "model", "status", "id"),
    Index(None, "job_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("requests.id"), nullable=False),
    Column("batch_id", String(32), nullable=False),
    Column("model", String(100), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("outcome", String(20), nullable=False),  # ok, retry, failed, stopped, interrupted
    Column("status", Integer),
    Column("error_type", String(100)),
    Column("error_code", Integer),
    Column("message", Text),
    Column("request_uid", String(100)),  # the API's request id
    Column("retry_after_s", Float),
    Index(None, "request_id"),
    Index(None, "batch_id", "model", "started_at"),
    # Covers the retry count of a batch's models (calls beyond each request's first).
    Index(None, "batch_id", "model", "request_id"),
)

results = Table(
    "results",
    metadata,
    Column("request_id", Integer, ForeignKey("requests.id"), primary_key=True),
    Column("batch_id", String(32), nullable=False),
    Column("model", String(100), nullable=False),
    Column("custom_id", String(256), nullable=False),
    Column("sent_at", Float, nullable=False),  # UTC epoch seconds
    # seconds after sent_at
    Column("first_event_s", Float),
    Column("first_token_s", Float),  # first content delta of any kind
    Column("first_thinking_s", Float),
    Column("first_text_s", Float),
    Column("last_token_s", Float),
    Column("done_s", Float, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cache_read_tokens", Integer, nullable=False),
    Column("cache_creation_tokens", Integer, nullable=False),
    Column("stop_reason", String(40)),
    Column("text", Text, nullable=False),  # the visible answer (leaked <think> taken out)
    Column("thinking", Text, nullable=False),  # thinking blocks, then leaked reasoning
    Column("message", JSON, nullable=False),  # the final message as received, Anthropic's shape
    Column("cost_nanos", BigInteger),  # NULL: unpriced
    Column("price_date", String(10)),  # the effective date of the price used
    Column("simulated", Boolean, nullable=False),
    # What was odd about the reply, comma-separated (think_leaked, empty_reply); NULL: nothing.
    Column("flags", String(100)),
    # Prompt tokens batchrun expected MiniMax to read from its cache for this request when it was
    # sent (0: none expected); NULL: stored before batchrun kept it.
    Column("expected_cache_tokens", Integer),
    # What the same usage would have cost with every prompt token at the input rate (same day's
    # price, tier and multiplier), and the part of cost_nanos paid for cache writes. NULL:
    # unpriced, or stored before batchrun kept them (`batchrun reprice` fills them).
    Column("uncached_cost_nanos", BigInteger),
    Column("cache_write_cost_nanos", BigInteger),
    Index(None, "batch_id", "model"),
    Index(None, "model", "sent_at"),
    # Covers every figure the dashboard computes, so reading a million results' metrics scans
    # this narrow index instead of rows that carry the answers' text.
    Index("ix_results_metrics", "batch_id", "request_id", "model", *RESULT_METRICS),
)

# Sums over the results of one batch, model, UTC hour of sending and origin (simulated or
# real), kept in the transaction that writes or reprices those results (store/aggregates.py): a
# headline or a spend chart over a million results reads a few hundred rows. Percentiles are not
# sums: they stay with the results. Money columns are sums over the priced results only, each
# with its count, so an hour whose results are all unpriced is known as such (never $0).
batch_aggregates = Table(
    "batch_aggregates",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # epoch seconds of the UTC hour of sent_at
    Column("simulated", Boolean, primary_key=True),
    Column("results", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_creation_tokens", BigInteger, nullable=False),
    Column("cached_results", BigInteger, nullable=False),  # with a cache read
    Column("priced", BigInteger, nullable=False),  # results with a cost (the rest: unpriced)
    Column("cost_nanos", BigInteger, nullable=False),  # over the priced results
    Column("priced_output_tokens", BigInteger, nullable=False),
    Column("write_priced", BigInteger, nullable=False),  # with a cache-write cost
    Column("cache_write_cost_nanos", BigInteger, nullable=False),
    Column("saving_known", BigInteger, nullable=False),  # with both cost and uncached cost
    Column("cache_saving_nanos", BigInteger, nullable=False),  # uncached - cost over those
    # The prompt-cache reads batchrun expected (migration 0015): results expected to read from
    # the cache, those of them that reported no read (analytics.cache_trust_note's two counts),
    # and the expected cache-read tokens over the results that have the figure.
    Column("expected_cache_hits", BigInteger, nullable=False, server_default="0"),
    Column("unreported_cache_hits", BigInteger, nullable=False, server_default="0"),
    Column("expected_known", BigInteger, nullable=False, server_default="0"),
    Column("expected_cache_tokens", BigInteger, nullable=False, server_default="0"),
)

grades = Table(
    "grades",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("results.request_id"), nullable=False),
    Column("batch_id", String(32), nullable=False),  # the graded batch (not the judge's)
    Column("grader", String(120), nullable=False),  # "expect", or "judge:MODEL"
    Column("score", Float),  # 0..1; NULL when the grader could not grade (see error)
    Column("passed", Boolean),
    Column("reason", Text, nullable=False),
    Column("error", Text),  # why there is no score: an unparseable judge reply, a failed call
    Column("judge_model", String(100)),
    Column("judge_request_id", Integer),  # the judge batch's request (its attempts, timings)
    Column("judge_cost_nanos", BigInteger),  # NULL: no judge, or an unpriced judge call
    Column("graded_at", Float, nullable=False),
    UniqueConstraint("request_id", "grader"),
    Index(None, "batch_id", "grader"),
)

# A person's rating of an answer and their comment (the Outputs grid); a rating is also kept
# as the "human" grade of the answer (store/ratings.py), so it counts wherever grades do.
ratings = Table(
    "ratings",
    metadata,
    Column("request_id", Integer, ForeignKey("results.request_id"), primary_key=True),
    Column("batch_id", String(32), nullable=False),
    Column("rating", Integer),  # 1 good, -1 bad; NULL: a comment only
    Column("comment", Text, nullable=False),
    Column("rated_at", Float, nullable=False),
    Index(None, "batch_id"),
)

# A worker renews and releases its claims by ``claimed_by``.
Index("ix_requests_claimed_by", requests.c.claimed_by)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    # Written with the heartbeat (NULL: not yet, or an older batchrun): requests sent so far,
    # those of the last minute, the longest event-loop stall since the last beat and overall.
    Column("sent", Integer),
    Column("sent_per_min", Float),
    Column("stall_s", Float),
    Column("stall_max_s", Float),
)

pacers = Table(
    "pacers",
    metadata,
    Column("name", String(120), primary_key=True),  # "rpm:MODEL" or "tpm:MODEL"
    Column("next_at", Float, nullable=False),  # epoch seconds of the next free slot
    # The team's back-off, on the database's clock: NULL is none. The rate factor after the
    # last 429 / 529 (it recovers from throttled_at on, as a worker's own does) and a pause.
    Column("factor", Float, nullable=True),
    Column("throttled_at", Float, nullable=True),
    Column("paused_until", Float, nullable=True),
)

slots = Table(
    "slots",
    metadata,
    Column("name", String(120), primary_key=True),  # the model's name
    Column("in_flight", Integer, nullable=False),  # calls the team has in flight now
)

slot_holds = Table(
    "slot_holds",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("name", String(120), primary_key=True),
    Column("slots", Integer, nullable=False),
)

budgets = Table(
    "budgets",
    metadata,
    Column("batch_id", String(32), ForeignKey("batches.id"), primary_key=True),
    Column("cap_nanos", BigInteger, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False),
    Column("reserved_nanos", BigInteger, nullable=False),
)

budget_holds = Table(
    "budget_holds",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), primary_key=True),
    Column("nanos", BigInteger, nullable=False),
)

model_budgets = Table(
    "model_budgets",
    metadata,
    Column("batch_id", String(32), ForeignKey("batches.id"), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("cap_nanos", BigInteger, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False),  # the batch's spend on the model
    Column("reserved_nanos", BigInteger, nullable=False),
)

model_budget_holds = Table(
    "model_budget_holds",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("nanos", BigInteger, nullable=False),
)
