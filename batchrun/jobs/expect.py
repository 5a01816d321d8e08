"""The ``expect`` object of a job line, validated into a typed Expectation.

    {"equals": "Paris"}                      the whole answer, normalised, is this text
    {"equals": 42}                           the whole answer is this number
    {"contains": ["Paris", "France"]}        every item occurs in the answer ("x" = ["x"])
    {"regex": "\\b42\\b", "flags": "i"}      the pattern matches somewhere in the answer
    {"json_schema": {...}}                   the answer holds a JSON value valid for the schema
    {"choice": "B"}                          the answer picks option B
    "ignore_case": true                      equals and contains compare case-insensitively

Several kinds may be combined in one object: each is graded, the answer passes when all pass,
and the score is the mean of their scores. Every kind compares NFC-normalised Unicode text
(``é`` typed as one code point or as ``e`` and an accent compare equal). The exact rules of
each kind are in ``batchrun.grading.graders`` and the README ("Grading answers").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchrun.jobs.jsonvalue import deep_path
from batchrun.jobs.jsonvalue import describe as _got

__all__ = ["KINDS", "Expectation", "ExpectationError", "parse_expectation"]

KINDS = ("equals", "contains", "regex", "json_schema", "choice")
OPTIONS = ("flags", "ignore_case")
_ALLOWED = (*KINDS, *OPTIONS)
REGEX_FLAGS: Mapping[str, re.RegexFlag] = {
    "i": re.IGNORECASE,
    "m": re.MULTILINE,
    "s": re.DOTALL,
    "x": re.VERBOSE,
}
_MAX_CHOICE_CHARS = 16
# jsonschema checks and applies a schema by recursion, a few Python frames per level: past about
# 180 levels (objects and lists) it hits Python's recursion limit. Real schemas stay far below.
MAX_SCHEMA_DEPTH = 64
_CHOICE = re.compile(r"[A-Za-z0-9]+")


class ExpectationError(ValueError):
    """An unusable ``expect`` object: the field at fault (e.g. ``expect.regex``) and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True, slots=True)
class Expectation:
    """What a right answer looks like; None for each kind that is not asked for."""

    equals: str | float | None = None
    contains: tuple[str, ...] | None = None
    regex: str | None = None
    flags: str = ""
    json_schema: Mapping[str, Any] | None = None
    choice: str | None = None
    ignore_case: bool = False

    def kinds(self) -> tuple[str, ...]:
        """The kinds this expectation checks, in the documented order."""
        return tuple(kind for kind in KINDS if getattr(self, kind) is not None)

    def compiled(self) -> re.Pattern[str] | None:
        """The regex compiled with its flags (NFC-normalised, as answers are)."""
        if self.regex is None:
            return None
        return _compile(self.regex, self.flags)

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: what the store keeps in ``jobs.expect``."""
        out: dict[str, Any] = {}
        for kind in self.kinds():
            value = getattr(self, kind)
            out[kind] = list(value) if isinstance(value, tuple) else value
        if self.flags:
            out["flags"] = self.flags
        if self.ignore_case:
            out["ignore_case"] = True
        return out


def parse_expectation(raw: Any) -> Expectation:
    """Validate a job line's ``expect`` value; raise ExpectationError naming the field."""
    if not isinstance(raw, dict):
        raise ExpectationError("expect", f"expect must be a JSON object, got {_got(raw)}")
    for key in raw:
        if key not in _ALLOWED:
            raise ExpectationError(
                f"expect.{key}",
                f"unknown expectation {key!r}; expect takes {', '.join(KINDS)} "
                f"(any of them together) and the options {', '.join(OPTIONS)}",
            )
    if not any(kind in raw for kind in KINDS):
        raise ExpectationError(
            "expect", f"expect names no expectation; give at least one of {', '.join(KINDS)}"
        )
    flags = _flags(raw)
    ignore_case = _ignore_case(raw)
    return Expectation(
        equals=_equals(raw["equals"]) if "equals" in raw else None,
        contains=_contains(raw["contains"]) if "contains" in raw else None,
        regex=_regex(raw["regex"], flags) if "regex" in raw else None,
        flags=flags,
        json_schema=_json_schema(raw["json_schema"]) if "json_schema" in raw else None,
        choice=_choice(raw["choice"]) if "choice" in raw else None,
        ignore_case=ignore_case,
    )


def nfc(text: str) -> str:
    """Unicode NFC normalisation, which every kind applies to the answer and the expectation."""
    return unicodedata.normalize("NFC", text)


def _equals(value: Any) -> str | float:
    if isinstance(value, bool) or value is None:
        raise ExpectationError(
            "expect.equals", f"equals must be a string or a number, got {_got(value)}"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ExpectationError("expect.equals", "equals must be a finite number")
        return value
    if not isinstance(value, str):
        raise ExpectationError(
            "expect.equals", f"equals must be a string or a number, got {_got(value)}"
        )
    if not value.strip():
        raise ExpectationError("expect.equals", "equals must not be empty or only whitespace")
    return nfc(value)


def _contains(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        shown = "an empty list" if items == [] else _got(value)
        raise ExpectationError(
            "expect.contains", f"contains must be a string or a non-empty list of them, got {shown}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise ExpectationError(
                f"expect.contains[{i}]", f"must be a non-empty string, got {_got(item)}"
            )
    return tuple(nfc(item) for item in items)


def _flags(raw: dict[str, Any]) -> str:
    if "flags" not in raw:
        return ""
    value = raw["flags"]
    if "regex" not in raw:
        raise ExpectationError("expect.flags", "flags apply to regex, and no regex is given")
    if not isinstance(value, str):
        raise ExpectationError(
            "expect.flags", f'flags must be a string of letters such as "is", got {_got(value)}'
        )
    unknown = sorted(set(value) - set(REGEX_FLAGS))
    if unknown:
        raise ExpectationError(
            "expect.flags",
            f"unknown regex flag(s) {''.join(unknown)!r}; flags are letters among "
            "i (ignore case), m (multiline), s (dot matches newline), x (verbose)",
        )
    return "".join(sorted(set(value)))


def _ignore_case(raw: dict[str, Any]) -> bool:
    if "ignore_case" not in raw:
        return False
    value = raw["ignore_case"]
    if not isinstance(value, bool):
        raise ExpectationError(
            "expect.ignore_case", f"ignore_case must be true or false, got {_got(value)}"
        )
    if value and "equals" not in raw and "contains" not in raw:
        raise ExpectationError(
            "expect.ignore_case",
            'ignore_case applies to equals and contains; for a regex use "flags": "i" '
            "(choice always ignores case)",
        )
    return value


def _regex(value: Any, flags: str) -> str:
    if not isinstance(value, str) or not value:
        raise ExpectationError(
            "expect.regex", f"regex must be a non-empty pattern string, got {_got(value)}"
        )
    try:
        _compile(value, flags)
    except re.error as exc:
        raise ExpectationError(
            "expect.regex", f"invalid regular expression: {exc} (Python re syntax)"
        ) from None
    return value


def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    combined = re.RegexFlag(0)
    for letter in flags:
        combined |= REGEX_FLAGS[letter]
    return re.compile(nfc(pattern), combined)


def _json_schema(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ExpectationError(
            "expect.json_schema", f"json_schema must be a JSON Schema object, got {_got(value)}"
        )
    if deep_path(value, MAX_SCHEMA_DEPTH) is not None:
        raise ExpectationError(
            "expect.json_schema",
            f"the schema is nested more than {MAX_SCHEMA_DEPTH} levels deep (objects and lists "
            "inside each other); flatten it, for example with $defs and $ref",
        )
    # Imported here: only files that use json_schema pay for loading jsonschema.
    from jsonschema.exceptions import SchemaError  # noqa: PLC0415
    from jsonschema.validators import validator_for  # noqa: PLC0415

    try:
        validator_for(value).check_schema(value)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise ExpectationError(
            f"expect.json_schema{where}", f"not a valid JSON Schema: {exc.message}"
        ) from None
    return value


def _choice(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > _MAX_CHOICE_CHARS or not _CHOICE.fullmatch(value):
        raise ExpectationError(
            "expect.choice",
            f'choice must be an option label of letters or digits such as "B" or "2" '
            f"(at most {_MAX_CHOICE_CHARS} characters), got {_got(value)}",
        )
    return value.upper()
