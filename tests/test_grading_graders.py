"""Every deterministic grader, with its edge cases: JSON inside text, Unicode, regex flags."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.grading import extract_json, grade, parse_expectation, picked_choice


def graded(answer: str, **expect: Any) -> tuple[float, bool, str]:
    verdict = grade(answer, parse_expectation(expect))
    return verdict.score, verdict.passed, verdict.reason


# ---------------------------------------------------------------- equals


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ("Paris", True),
        ("  Paris \n", True),  # trimmed
        ("paris", False),  # case-sensitive by default
        ("Paris.", False),  # punctuation is not removed
        ("The capital is Paris", False),
    ],
)
def test_equals_text(answer: str, passed: bool) -> None:
    assert graded(answer, equals="Paris")[1] is passed


def test_equals_collapses_inner_whitespace_and_ignores_case_on_request() -> None:
    assert graded("New \t\n  York", equals="New York")[1]
    assert not graded("NEW YORK", equals="New York")[1]
    assert graded("NEW YORK", equals="New York", ignore_case=True)[1]
    # casefolding, not lower(): German sharp s folds to "ss".
    assert graded("STRASSE", equals="stra\u00dfe", ignore_case=True)[1]


def test_equals_compares_nfc_normalised_unicode() -> None:
    composed, decomposed = "Caf\u00e9", "Cafe\u0301"
    assert graded(decomposed, equals=composed)[1]
    assert graded(composed, equals=decomposed)[1]
    assert graded("\u65e5\u672c", equals="\u65e5\u672c")[1]
    assert not graded("\u65e5", equals="\u65e5\u672c")[1]


@pytest.mark.parametrize(
    ("answer", "passed"),
    [("42", True), (" 42\n", True), ("42.0", True), ("4.2e1", True), ("+42", True),
     ("41", False), ("42.5", False), ("42.", True), ("The answer is 42", False),
     ("42 apples", False), ("4,2", False), ("forty-two", False)],
)  # fmt: skip
def test_equals_number(answer: str, passed: bool) -> None:
    assert graded(answer, equals=42)[1] is passed


def test_equals_reasons_show_what_was_expected_and_got() -> None:
    score, passed, reason = graded("Lyon", equals="Paris")
    assert (score, passed) == (0.0, False)
    assert reason == "equals: expected 'Paris', got 'Lyon'"
    assert graded("41", equals=42)[2] == "equals: expected 42, got 41"
    assert graded("x" * 200, equals="y")[2].endswith("...'")  # long answers are cut


# ---------------------------------------------------------------- contains


def test_contains_scores_the_share_of_items_found() -> None:
    assert graded("Paris is in France", contains=["Paris", "France"]) == (
        1.0,
        True,
        "contains: all 2 found",
    )
    score, passed, reason = graded("Paris is nice", contains=["Paris", "France", "Seine", "Louvre"])
    assert (score, passed) == (0.25, False)
    assert reason == "contains: 1/4 found; missing 'France', 'Seine', 'Louvre'"


def test_contains_case_whitespace_and_unicode() -> None:
    assert not graded("paris", contains="Paris")[1]
    assert graded("paris", contains="Paris", ignore_case=True)[1]
    assert graded("in  New\nYork today", contains="New York")[1]
    assert graded("un caf\u00e9 noir", contains="cafe\u0301")[1]


# ---------------------------------------------------------------- regex


def test_regex_searches_anywhere() -> None:
    assert graded("The total is 1,234 dollars", regex=r"\b1,234\b")[1]
    assert not graded("The total is 11,234", regex=r"\b1,234\b")[1]
    _, _, reason = graded("nothing", regex=r"\d+")
    assert reason == r"regex: no match for /\d+/"


def test_regex_flags() -> None:
    assert not graded("ANSWER", regex="answer")[1]
    assert graded("ANSWER", regex="answer", flags="i")[1]
    text = "first line\nsecond line"
    assert not graded(text, regex="^second")[1]
    assert graded(text, regex="^second", flags="m")[1]
    assert not graded(text, regex="first.*second")[1]
    assert graded(text, regex="first.*second", flags="s")[1]
    assert graded("abc123", regex=r"abc  \d+  # letters then digits", flags="x")[1]
    assert graded("A\nb", regex="a.B", flags="is")[2] == "regex: matched 'A b'"


def test_regex_on_unicode() -> None:
    assert graded("Caf\u00e9", regex="Cafe\u0301")[1]  # the pattern is NFC-normalised too
    assert graded("\u00c9COLE", regex="\u00e9cole", flags="i")[1]
    assert graded("\u6771\u4eac\u90fd", regex=r"^\w{3}$")[1]


# ---------------------------------------------------------------- json_schema

PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
}


def test_json_schema_whole_answer() -> None:
    assert graded('{"name": "Ada", "age": 36}', json_schema=PERSON) == (
        1.0,
        True,
        "json_schema: valid JSON (the whole answer)",
    )


def test_json_schema_in_a_fenced_block_with_text_around() -> None:
    answer = 'Here it is:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?'
    assert graded(answer, json_schema=PERSON)[2] == "json_schema: valid JSON (fenced block 1)"
    # A fence that is not JSON is skipped for the next one.
    answer = '```python\nprint("hi")\n```\nthen\n```\n{"name": "Ada", "age": 1}\n```'
    assert graded(answer, json_schema=PERSON)[2] == "json_schema: valid JSON (fenced block 2)"


def test_json_schema_embedded_in_prose() -> None:
    answer = 'Sure! {"name": "Ada", "age": 36} is the record {not json}.'
    assert graded(answer, json_schema=PERSON)[2] == (
        "json_schema: valid JSON (embedded at character 7)"
    )
    # The first JSON value is the one graded, even when a later one would be valid.
    answer = 'Draft: {"name": "Ada"} Final: {"name": "Ada", "age": 36}'
    assert graded(answer, json_schema=PERSON)[2].endswith(
        "(embedded at character 8) is invalid at $: 'age' is a required property"
    )
    # A brace that starts no JSON is passed over.
    answer = 'Use {braces} like {"name": "Ada", "age": 3}'
    assert graded(answer, json_schema=PERSON)[1]


def test_json_schema_failures_say_where() -> None:
    _, passed, reason = graded('{"name": "Ada", "age": "old"}', json_schema=PERSON)
    assert not passed
    assert reason == (
        "json_schema: JSON (the whole answer) is invalid at $.age: 'old' is not of type 'integer'"
    )
    assert graded('{"name": "Ada"}', json_schema=PERSON)[2].endswith(
        "is invalid at $: 'age' is a required property"
    )
    assert graded("no json here", json_schema=PERSON)[2] == (
        "json_schema: no JSON value found in the answer"
    )


def test_json_schema_unicode_values() -> None:
    schema = {"type": "object", "properties": {"city": {"const": "M\u00fcnchen"}}}
    assert graded('{"city": "Mu\u0308nchen"}', json_schema=schema)[1]  # NFC before parsing
    assert graded('{"city": "M\\u00fcnchen"}', json_schema=schema)[1]  # JSON escapes
    assert not graded('{"city": "Munchen"}', json_schema=schema)[1]


def test_json_schema_other_values_and_drafts() -> None:
    assert graded("[1, 2, 3]", json_schema={"type": "array", "maxItems": 3})[1]
    assert not graded("The list: [1, 2, 3, 4]", json_schema={"type": "array", "maxItems": 3})[1]
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "integer"}
    assert graded("7", json_schema=draft7)[1]


def test_extract_json_returns_none_or_the_first_value() -> None:
    assert extract_json("") is None
    assert extract_json("{ not json") is None
    assert extract_json('"a string"') == ("a string", "the whole answer")
    assert extract_json('x [1] y {"a": 2}') == ([1], "embedded at character 3")


@given(st.text(max_size=200))
def test_extract_json_never_raises(text: str) -> None:
    found = extract_json(text)
    assert found is None or isinstance(found[1], str)


# ---------------------------------------------------------------- choice


@pytest.mark.parametrize(
    ("answer", "picked"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("**B.**", "B"),
        ("B) Paris", "B"),
        ("C. Because it is the largest", "C"),
        ("The answer is B.", "B"),
        ("I think the answer is (C), since ...", "C"),
        ("Answer: D", "D"),
        ("answer: D", "D"),
        ("Option A is right", "A"),
        ("It is a city in France.", None),  # the word "a" is not option A
        ("I am not sure", None),
        ("", None),
    ],
)
def test_picked_choice_letters(answer: str, picked: str | None) -> None:
    assert picked_choice(answer, "B") == picked


def test_picked_choice_numbers_and_words() -> None:
    assert picked_choice("The answer is 3", "3") == "3"
    assert picked_choice("12", "3") == "12"
    assert picked_choice("choice: yes", "YES") == "YES"


def test_choice_grades() -> None:
    assert graded("The answer is B.", choice="B") == (1.0, True, "choice: picked B")
    assert graded("(C)", choice="b") == (0.0, False, "choice: picked C, expected B")
    assert graded("Paris", choice="B")[2] == "choice: no option label found in 'Paris'"


# ---------------------------------------------------------------- combined


def test_combined_expectations_must_all_pass_and_average_their_scores() -> None:
    score, passed, reason = graded(
        "The answer is B: Paris.", choice="B", contains=["Paris", "France"], regex="answer"
    )
    assert score == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert not passed
    assert reason == (
        "contains: 1/2 found; missing 'France'; regex: matched 'answer'; choice: picked B"
    )
    assert graded("The answer is B: Paris, France.", choice="B", contains=["Paris", "France"])[1]
