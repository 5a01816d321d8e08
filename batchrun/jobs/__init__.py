"""Job files: JSONL lines read, validated and turned into JobSpecs (or LineErrors).

    reader.py     read_jobs: stream a file, one JobSpec or LineError per non-blank line
      filecheck.py  check_file: the whole file is readable, non-empty UTF-8 JSON Lines
      formats.py    a line's two formats (batch and shorthand) -> custom_id, params, expect
        expect.py     the ``expect`` object, validated into an Expectation
      params.py     the rules of each Messages parameter
        messages.py   the rules of ``messages`` and their content blocks
      targets.py    the models a line runs on, and why some cannot run it
      idindex.py    the custom_ids seen so far (duplicate check), in compact arrays
    spec.py       the values: JobSpec, LineError, ReadOptions, and the content hash
    errors.py     Invalid (inside validation), hints, did-you-mean, format_line_errors
    jsonvalue.py  how a message describes a value the user wrote

Callers import from this package: ``from batchrun.jobs import JobSpec, read_jobs``.
"""

from batchrun.jobs.errors import format_line_errors
from batchrun.jobs.filecheck import check_file
from batchrun.jobs.reader import read_jobs
from batchrun.jobs.spec import JobSpec, LineError, ReadOptions

__all__ = [
    "JobSpec",
    "LineError",
    "ReadOptions",
    "check_file",
    "format_line_errors",
    "read_jobs",
]
