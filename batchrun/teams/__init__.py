"""Teams: several ``batchrun worker`` processes, on any machines, draining one shared store.

The database does all the coordination (PostgreSQL for a team; SQLite works for one machine):

- ``claims``: a worker claims pending requests with ``SELECT ... FOR UPDATE SKIP LOCKED`` under
  a lease that its heartbeat renews; a lease that runs out (the worker died) is taken over, and a
  result is written only by the request's current holder, so no request gets two results.
- ``shared``: each model's RPM / TPM pacer is one row that every worker advances atomically (on
  the database's clock), and a capped batch's budget is one row reserved against atomically, with
  per-worker holds that are freed when a worker stops heartbeating.
- ``worker``: the loop that finds open batches and drives the ordinary BatchRunner with these.
"""
