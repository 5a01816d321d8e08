"""The simulator's timing log: when it really wrote each stream's first content token and last byte.

A client's own timings (batchrun's TTFT and done) include the lateness of its event loop; this log
is the truth to compare them with. One JSON line per stream that was served to its end:
``{"request_id", "message_id", "model", "first_token", "last_byte"}``, times from ``time.time()``
(the clock batchrun's ``sent_at`` uses), read just before the write that carries it: the write
is a system call, and a process is most often set aside at a system call's end, so a clock read
after it could come after the client already had the bytes.

The event loop only appends a tuple to a deque; a background thread turns them into lines every
``FLUSH_S``, so the log costs the serving loop next to nothing, and nothing at all when it is off.
The file appears whole when the simulator stops (written beside it, then linked into place): an
existing file is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from batchrun.exceptions import SimulatorError

FLUSH_S = 0.25  # how often the writer thread empties the buffer
CHUNK = 1 << 20  # bytes copied at a time when the workers' logs are joined
Record = tuple[str, str, str, float | None, float]


class TimingLog:
    """A JSONL file of true stream timings, filled by a background writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial, self._file = _start_file(path)
        self._pending: deque[Record] = deque()  # append and popleft are thread-safe
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="sim-timing", daemon=True)
        self._thread.start()

    def record(
        self, request_id: str, message_id: str, model: str, first: float | None, last: float
    ) -> None:
        """Note one finished stream (called on the event loop: only an append)."""
        self._pending.append((request_id, message_id, model, first, last))

    def close(self) -> None:
        """Write what is left and put the file in place."""
        self._stop.set()
        self._thread.join()
        self._flush()
        self._file.close()
        _publish(self._partial, self.path)

    def __enter__(self) -> TimingLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write_loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        taken = [pending.popleft() for _ in range(len(pending))]
        if taken:
            self._file.write(b"".join(_line(record) for record in taken))
            self._file.flush()


def check_new(path: Path) -> None:
    """Refuse a timing log that would overwrite a file."""
    if path.exists():
        raise SimulatorError(f"the timing log {path} exists already: give a new file name")


def join_timing_logs(parts: list[Path], path: Path) -> None:
    """Put the logs of a simulator's worker processes (sim/workers.py) together as ``path``.

    Each worker logs the streams it served; the parent joins them once every worker has stopped,
    so the file still appears whole, and never over an existing one."""
    partial, file = _start_file(path)
    with file:
        for part in parts:
            if part.exists():  # a worker that died before it could write its log has none
                with part.open("rb") as source:  # in pieces: a long run's part is large
                    shutil.copyfileobj(source, file, CHUNK)
    _publish(partial, path)


def _start_file(path: Path) -> tuple[Path, Any]:
    """A new hidden file beside ``path``, to be put in place by ``_publish``."""
    check_new(path)
    try:
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise SimulatorError(f"cannot write the timing log {path}: {exc.strerror}") from exc
    return Path(partial), os.fdopen(handle, "wb")


def _publish(partial: Path, path: Path) -> None:
    try:
        os.link(partial, path)  # fails, never overwrites, if the name was taken
    except FileExistsError:
        raise SimulatorError(
            f"the timing log {path} appeared while the simulator ran; "
            f"its timings are kept in {partial}"
        ) from None
    partial.unlink()


def _line(record: Record) -> bytes:
    request_id, message_id, model, first, last = record
    fields = {
        "request_id": request_id,
        "message_id": message_id,
        "model": model,
        "first_token": first,
        "last_byte": last,
    }
    return orjson.dumps(fields) + b"\n"


def read_timing_log(path: Path) -> dict[str, dict[str, Any]]:
    """The log's records by message id (the id a stored result's message carries)."""
    with path.open("rb") as handle:
        records = [orjson.loads(line) for line in handle if line.strip()]
    return {record["message_id"]: record for record in records}
