"""The values a job file reads into: a JobSpec per good line, a LineError per bad one."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# The fields count_tokens counts: the content hash keys its cache.
_COUNTED = ("messages", "system", "tools", "tool_choice", "thinking")


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One valid job line: Messages params ready to send, and the models it cannot run on."""

    line_no: int
    custom_id: str
    params: dict[str, Any]
    model: str | None
    invalid_for: Mapping[str, str]
    content_hash: str
    expect: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class LineError:
    """One unusable line, with the field at fault and what was expected."""

    path: str
    line_no: int
    field: str | None
    message: str
    custom_id: str | None

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.path}:{self.line_no}: {self.message}"
        return f"{self.path}:{self.line_no}: {self.field}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How to read a job file: the --models override and the default max_tokens."""

    models: Sequence[str] | None = None
    default_max_tokens: int = 1024


def content_hash(params: dict[str, Any]) -> str:
    """The hash of what count_tokens counts, keying its cache."""
    counted = {key: params[key] for key in _COUNTED if key in params}
    return hashlib.sha256(orjson.dumps(counted, option=orjson.OPT_SORT_KEYS)).hexdigest()
