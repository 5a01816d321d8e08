"""The whole-file check: a job file must be readable, non-empty UTF-8 JSON Lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from batchrun.exceptions import JobFileError
from batchrun.jobs.errors import HINT

_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 8192


def check_file(path: Path) -> None:
    """Raise JobFileError unless ``path`` looks like a readable, non-empty JSONL file."""
    where = str(path)
    first, second = _read_head(path, where)
    if first is None:
        raise JobFileError(where, f"the file is empty (or only whitespace); {HINT}")
    _check_first_line(where, first, second)


def nonblank_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Each non-blank line with its number, a leading BOM removed from the first."""
    for line_no, raw in enumerate(stream, 1):
        line = raw[len(_BOM) :] if line_no == 1 and raw.startswith(_BOM) else raw
        if line and not line.isspace():
            yield line_no, line


def _read_head(path: Path, where: str) -> tuple[bytes | None, bytes | None]:
    try:
        if path.is_dir():
            raise JobFileError(where, f"is a directory, not a job file; {HINT}")
        with path.open("rb") as stream:
            _check_head(where, stream.read(_SNIFF_BYTES))
            stream.seek(0)
            return _first_two_lines(stream)
    except FileNotFoundError:
        raise JobFileError(where, "no such file") from None
    except OSError as exc:
        raise JobFileError(where, f"cannot read the file: {exc.strerror or exc}") from exc


def _check_head(where: str, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise JobFileError(where, f"the file is UTF-16 text; save it as UTF-8. {HINT}")
    if b"\x00" in head:
        raise JobFileError(where, f"the file is binary (it contains NUL bytes), not text; {HINT}")


def _first_two_lines(stream: IO[bytes]) -> tuple[bytes | None, bytes | None]:
    """The first two non-blank lines, stripped, with a leading BOM removed."""
    found: list[bytes | None] = []
    for _, line in nonblank_lines(stream):
        found.append(line.strip())
        if len(found) == 2:
            break
    found += [None, None]
    return found[0], found[1]


def _check_first_line(where: str, first: bytes, second: bytes | None) -> None:
    if first.startswith(b"["):
        raise JobFileError(where, f"the file is a JSON array, not JSON Lines; {HINT}", 1)
    if not first.startswith(b"{"):
        snippet = first[:40].decode("utf-8", "replace")
        raise JobFileError(
            where, f"the first line is not a JSON object (it starts {snippet!r}); {HINT}"
        )
    if first == b"{" or (_is_unfinished(first) and _looks_indented(second)):
        raise JobFileError(
            where,
            f"the file looks like one pretty-printed JSON document, not JSON Lines; {HINT}",
        )


def _is_unfinished(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return exc.pos >= len(line)
    return False


def _looks_indented(line: bytes | None) -> bool:
    # A pretty-printed document continues with indented keys or a closing bracket.
    return line is not None and line[:1] in (b'"', b"}", b"]")
