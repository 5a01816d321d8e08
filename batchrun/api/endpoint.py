"""Where requests go and how long they may take: plain settings, light to import."""

from __future__ import annotations

from dataclasses import dataclass

from batchrun.redaction import keep_secret


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where requests go. ``simulated`` marks the built-in simulator."""

    base_url: str
    api_key: str
    simulated: bool

    def __post_init__(self) -> None:
        keep_secret(self.api_key)  # from now on, every error text this process keeps omits it

    def __repr__(self) -> str:  # never show the key
        return f"Endpoint(base_url={self.base_url!r}, simulated={self.simulated})"


@dataclass(frozen=True, kw_only=True)
class Deadlines:
    """Seconds a call may take: to connect, between two reads, and in all."""

    connect: float = 30.0
    idle: float = 60.0
    total: float = 900.0
