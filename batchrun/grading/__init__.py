"""Grading answers: expectations from the job line, deterministic graders, an optional model
judge, and the quality reports. Light to import: the job file reader uses ``expect``; the judge
(which needs the runner) and the reports (polars) are imported where they are used.
"""

from batchrun.grading.graders import Grade, extract_json, grade, picked_choice
from batchrun.jobs.expect import Expectation, ExpectationError, parse_expectation

__all__ = [
    "Expectation",
    "ExpectationError",
    "Grade",
    "extract_json",
    "grade",
    "parse_expectation",
    "picked_choice",
]
