"""The ``expect`` object: what is accepted, its canonical form, and line errors for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.catalog import load_catalog
from batchrun.jobs import JobSpec, LineError, ReadOptions, read_jobs
from batchrun.jobs.expect import Expectation, ExpectationError, parse_expectation

M3 = "MiniMax-M3"


def read_lines(tmp_path: Path, *lines: dict[str, Any]) -> list[JobSpec | LineError]:
    path = tmp_path / "graded.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return list(read_jobs(path, load_catalog(), ReadOptions()))


def test_every_kind_together_in_canonical_form() -> None:
    schema = {"type": "object", "required": ["a"]}
    expectation = parse_expectation(
        {
            "equals": "Paris",
            "contains": "Par",
            "regex": "^P",
            "flags": "mi",
            "json_schema": schema,
            "choice": "b",
            "ignore_case": True,
        }
    )
    assert expectation == Expectation(
        equals="Paris",
        contains=("Par",),
        regex="^P",
        flags="im",
        json_schema=schema,
        choice="B",
        ignore_case=True,
    )
    assert expectation.kinds() == ("equals", "contains", "regex", "json_schema", "choice")
    assert parse_expectation(expectation.to_json()) == expectation


def test_numbers_and_unicode_are_kept_as_they_mean() -> None:
    assert parse_expectation({"equals": 42}).equals == 42
    assert parse_expectation({"equals": 2.5}).to_json() == {"equals": 2.5}
    assert parse_expectation({"choice": 3}).choice == "3"
    decomposed = "Cafe\u0301"  # "Café" as e + combining accent
    assert parse_expectation({"equals": decomposed}).equals == "Caf\u00e9"
    assert parse_expectation({"contains": [decomposed]}).contains == ("Caf\u00e9",)


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ("Paris", "expect", "must be a JSON object"),
        ({}, "expect", "names no expectation"),
        ({"equal": "x"}, "expect.equal", "unknown expectation 'equal'"),
        ({"equals": True}, "expect.equals", "a string or a number"),
        ({"equals": "  "}, "expect.equals", "must not be empty"),
        ({"equals": None}, "expect.equals", "a string or a number"),
        ({"contains": []}, "expect.contains", "an empty list"),
        ({"contains": ["a", 3]}, "expect.contains[1]", "non-empty string"),
        ({"contains": ["a", ""]}, "expect.contains[1]", "non-empty string"),
        ({"regex": "(unclosed"}, "expect.regex", "invalid regular expression"),
        ({"regex": ""}, "expect.regex", "non-empty pattern"),
        ({"regex": "x", "flags": "iq"}, "expect.flags", "unknown regex flag(s) 'q'"),
        ({"regex": "x", "flags": 1}, "expect.flags", "string of letters"),
        ({"equals": "x", "flags": "i"}, "expect.flags", "no regex is given"),
        ({"regex": "x", "ignore_case": True}, "expect.ignore_case", '"flags": "i"'),
        ({"equals": "x", "ignore_case": "yes"}, "expect.ignore_case", "true or false"),
        ({"json_schema": "object"}, "expect.json_schema", "JSON Schema object"),
        ({"json_schema": {"type": "thing"}}, "expect.json_schema.type", "not a valid JSON"),
        ({"json_schema": {"minLength": -1}}, "expect.json_schema.minLength", "not a valid"),
        ({"choice": "B or C"}, "expect.choice", "option label"),
        ({"choice": ""}, "expect.choice", "option label"),
        ({"choice": True}, "expect.choice", "option label"),
    ],
)
def test_invalid_expectations_name_their_field(raw: Any, field: str, words: str) -> None:
    with pytest.raises(ExpectationError) as caught:
        parse_expectation(raw)
    assert caught.value.field == field
    assert words in caught.value.message


def test_an_invalid_expect_is_a_line_error_with_file_line_and_field(tmp_path: Path) -> None:
    good = {"id": "ok", "model": M3, "prompt": "2+2?", "expect": {"equals": 4}}
    bad_regex = {"id": "r", "model": M3, "prompt": "Hi", "expect": {"regex": "[a-"}}
    bad_batch = {
        "custom_id": "b",
        "params": {"model": M3, "messages": [{"role": "user", "content": "Hi"}]},
        "expect": {"contains": ["x", 1]},
    }
    first, second, third = read_lines(tmp_path, good, bad_regex, bad_batch)
    assert isinstance(first, JobSpec)
    assert first.expect == {"equals": 4}
    assert isinstance(second, LineError)
    assert isinstance(third, LineError)
    path = tmp_path / "graded.jsonl"
    assert str(second).startswith(f"{path}:2: expect.regex: invalid regular expression")
    assert second.custom_id == "r"
    assert str(third) == f"{path}:3: expect.contains[1]: must be a non-empty string, got 1"


def test_the_sample_graded_file_is_valid() -> None:
    path = Path(__file__).parent.parent / "jobs" / "graded.jsonl"
    lines = list(read_jobs(path, load_catalog(), ReadOptions(models=[M3])))
    assert lines
    assert all(isinstance(line, JobSpec) for line in lines), [str(x) for x in lines]
    kinds = {kind for line in lines if line.expect for kind in line.expect}
    assert {"equals", "contains", "regex", "json_schema", "choice"} <= kinds
