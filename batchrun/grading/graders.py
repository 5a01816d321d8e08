"""Deterministic graders: answer text + Expectation -> Grade. Pure functions, no I/O.

Rules (the README's "Grading answers" repeats them):

- Every kind first NFC-normalises the answer (and the expected text).
- ``equals`` (text): both sides are trimmed and every run of whitespace becomes one space; the
  comparison is case-sensitive unless ``ignore_case`` (then Unicode casefolding). Nothing else
  is removed: "Paris." does not equal "Paris".
- ``equals`` (number): the trimmed answer must be a number alone (``42``, ``-3.5``, ``1e3``;
  a thousands separator or a unit fails) equal to it within a relative 1e-9.
- ``contains``: each item, normalised like ``equals`` text, must occur in the answer; the score
  is the share of items found, and all must be found to pass.
- ``regex``: Python ``re.search`` anywhere in the answer, with the given flags.
- ``json_schema``: the first JSON value in the answer (see ``extract_json``) must be valid for
  the schema (its ``$schema`` draft, else Draft 2020-12; formats are not checked).
- ``choice``: the option the answer picks (see ``picked_choice``) must be the expected label;
  labels compare case-insensitively.

A combined expectation passes when every kind passes; its score is the mean of theirs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchrun.jobs.expect import Expectation, nfc

__all__ = ["Grade", "extract_json", "grade", "picked_choice"]

_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_MAX_JSON_STARTS = 200  # candidate '{' / '[' positions tried in free text
_SHOWN = 60


@dataclass(frozen=True, kw_only=True, slots=True)
class Grade:
    """A grader's verdict: a score in [0, 1], whether it passes, and why."""

    score: float
    passed: bool
    reason: str


def grade(answer: str, expectation: Expectation) -> Grade:
    """Grade ``answer`` against every kind of ``expectation``."""
    text = nfc(answer)
    parts = [(kind, _GRADERS[kind](text, expectation)) for kind in expectation.kinds()]
    score = sum(part.score for _, part in parts) / len(parts)
    passed = all(part.passed for _, part in parts)
    reason = "; ".join(f"{kind}: {part.reason}" for kind, part in parts)
    return Grade(score=score, passed=passed, reason=reason)


def _normal(text: str, ignore_case: bool) -> str:
    collapsed = _SPACES.sub(" ", text).strip()
    return collapsed.casefold() if ignore_case else collapsed


def _shown(text: str) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return repr(flat if len(flat) <= _SHOWN else flat[: _SHOWN - 3] + "...")


def _verdict(passed: bool, reason: str) -> Grade:
    return Grade(score=1.0 if passed else 0.0, passed=passed, reason=reason)


def _equals(text: str, expectation: Expectation) -> Grade:
    expected = expectation.equals
    if isinstance(expected, int | float):
        return _equals_number(text, float(expected))
    assert expected is not None
    got = _normal(text, expectation.ignore_case)
    if got == _normal(expected, expectation.ignore_case):
        return _verdict(True, f"the answer is {_shown(expected)}")
    return _verdict(False, f"expected {_shown(expected)}, got {_shown(text)}")


def _equals_number(text: str, expected: float) -> Grade:
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        return _verdict(False, f"expected the number {expected:g} alone, got {_shown(text)}")
    value = float(stripped)
    if math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12):
        return _verdict(True, f"the answer is {expected:g}")
    return _verdict(False, f"expected {expected:g}, got {value:g}")


def _contains(text: str, expectation: Expectation) -> Grade:
    items = expectation.contains or ()
    haystack = _normal(text, expectation.ignore_case)
    missing = [item for item in items if _normal(item, expectation.ignore_case) not in haystack]
    found = len(items) - len(missing)
    score = found / len(items)
    if not missing:
        return Grade(score=score, passed=True, reason=f"all {len(items)} found")
    shown = ", ".join(_shown(item) for item in missing[:5])
    return Grade(score=score, passed=False, reason=f"{found}/{len(items)} found; missing {shown}")


def _regex(text: str, expectation: Expectation) -> Grade:
    pattern = expectation.compiled()
    assert pattern is not None
    flags = f" (flags {expectation.flags})" if expectation.flags else ""
    match = pattern.search(text)
    if match is None:
        return _verdict(False, f"no match for /{expectation.regex}/{flags}")
    return _verdict(True, f"matched {_shown(match.group(0))}")


def _json_schema(text: str, expectation: Expectation) -> Grade:
    found = extract_json(text)
    if found is None:
        return _verdict(False, "no JSON value found in the answer")
    value, where = found
    # Imported here: only batches that use json_schema pay for loading jsonschema.
    from jsonschema.exceptions import best_match  # noqa: PLC0415
    from jsonschema.validators import validator_for  # noqa: PLC0415

    schema = dict(expectation.json_schema or {})
    validator = validator_for(schema)(schema)
    error = best_match(validator.iter_errors(value))
    if error is None:
        return _verdict(True, f"valid JSON ({where})")
    return _verdict(False, f"JSON ({where}) is invalid at {error.json_path}: {error.message}")


def extract_json(text: str) -> tuple[Any, str] | None:
    """The first JSON value in ``text`` and where it was found; None if there is none.

    In order: the whole answer (trimmed); else the first fenced code block (```json or any
    other fence) whose content is JSON; else the first object or array that parses, starting
    at a ``{`` or ``[`` in the text (what comes after it is ignored).
    """
    whole = _loads(text.strip())
    if whole is not _NOTHING:
        return whole, "the whole answer"
    for number, fence in enumerate(_FENCE.finditer(text), 1):
        value = _loads(fence.group(1).strip())
        if value is not _NOTHING:
            return value, f"fenced block {number}"
    decoder = json.JSONDecoder()
    tried = 0
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        tried += 1
        if tried > _MAX_JSON_STARTS:
            break
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        return value, f"embedded at character {start + 1}"
    return None


_NOTHING = object()


def _loads(text: str) -> Any:
    if not text:
        return _NOTHING
    try:
        return json.loads(text)
    except ValueError:
        return _NOTHING


def _choice(text: str, expectation: Expectation) -> Grade:
    expected = expectation.choice
    assert expected is not None
    picked = picked_choice(text, expected)
    if picked is None:
        return _verdict(False, f"no option label found in {_shown(text)}")
    if picked == expected:
        return _verdict(True, f"picked {picked}")
    return _verdict(False, f"picked {picked}, expected {expected}")


_EMPHASIS = re.compile("[*_`\"'\u201c\u201d\u2018\u2019]")  # markdown and quotes around a label


def picked_choice(text: str, expected: str) -> str | None:
    """The option label an answer picks, upper-cased; None when it picks none.

    Labels look like ``expected``: one letter, digits, or a short word of letters and digits.
    In order: the whole answer is a label, maybe wrapped ("B", "(B)", "**B.**"); else an
    explicit "answer is B" / "Answer: (B)" / "option B" / "choice: B"; else the answer starts
    with a label and ")", "." or ":" ("B) Paris"). Single-letter labels must be capitals
    outside the whole-answer form, so the word "a" is never taken for option A.
    """
    label = _label_pattern(expected)
    bare = _EMPHASIS.sub("", text).strip()
    whole = re.fullmatch(rf"[(\[]?({label})[)\].:]?", bare, re.IGNORECASE)
    if whole:
        return whole.group(1).upper()
    letter = _is_letter(expected)
    strict = "[A-Z]" if letter else label
    explicit = re.search(
        rf"\b(?i:answer|choice|option)\b(?:\s+(?i:is))?\s*[:=]?\s*[(\[]?({strict})\b",
        bare,
        0 if letter else re.IGNORECASE,
    )
    if explicit:
        return explicit.group(1).upper()
    leading = re.match(rf"[(\[]?({strict})[)\].:](?:\s|$)", bare)
    return leading.group(1).upper() if leading else None


def _is_letter(label: str) -> bool:
    return len(label) == 1 and label.isalpha()


def _label_pattern(expected: str) -> str:
    if _is_letter(expected):
        return "[A-Za-z]"
    if expected.isdigit():
        return r"\d+"
    return "[A-Za-z0-9]+"


_GRADERS: dict[str, Callable[[str, Expectation], Grade]] = {
    "equals": _equals,
    "contains": _contains,
    "regex": _regex,
    "json_schema": _json_schema,
    "choice": _choice,
}
