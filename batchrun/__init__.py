"""batchrun: run JSONL batches against MiniMax's Anthropic-compatible API."""

__version__ = "0.1.0"
