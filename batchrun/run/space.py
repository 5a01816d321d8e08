"""Free disk space: checked before a run sends anything and watched while it runs.

A result that was paid for exists only once committed, and committing needs room on the disk
that holds the database; a result that could not be committed is written to a file, which needs
room too (the database's directory first, then the working directory: see ``run.unsaved``). So a
run sends nothing while either directory has less than a margin free, and stops sending as soon
as one falls below it: the calls in flight then finish into the room the margin kept.

The default margin, 64 MiB: after dispatch stops, the calls in flight still have to be committed
(a few hundred answers of up to tens of thousands of tokens are a few MB of text, which SQLite
writes twice: into its write-ahead log, then into the database), the batch's status and the file
of what could not be saved need room after that, and other programs on the same disk need some
too. 64 MiB covers that for a few hundred calls in flight and is a small part of any disk today;
``--min-free-space`` changes it (0 turns the check off).

A small reserve file held next to the database during a run (``Reserve``) is deleted when the run
ends, so that even a disk filled to its last byte by another program leaves room to mark the
batch paused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchrun.exceptions import ConfigError, DiskSpaceError

MIB = 1024 * 1024
DEFAULT_MIN_FREE = 64 * MIB
DEFAULT_MIN_FREE_TEXT = "64MB"
RESERVE_BYTES = 1 * MIB  # enough for the few pages that mark a batch paused
WATCH_SECONDS = 0.25  # how often a run looks at the free space: statvfs costs microseconds

_UNITS = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": 1024 * MIB, "t": 1024 * 1024 * MIB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str = "--min-free-space") -> int:
    """A size such as ``64MB``, ``500k``, ``1.5G`` or ``0``, in bytes (K, M, G: powers of 1024)."""
    found = _SIZE.match(text)
    if found is None:
        raise ConfigError(
            f"{option} must be a size such as 64MB, 500KB or 2GB (0 turns the check off), "
            f"not {text!r}"
        )
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


def format_size(size: int) -> str:
    """A size for people: ``12.0 MiB``."""
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def free_bytes(path: Path) -> int:
    """The bytes an unprivileged program may still write on the filesystem holding ``path``
    (its nearest existing parent when it does not exist yet)."""
    found = _existing(path)
    stats = os.statvfs(found)
    return stats.f_bavail * stats.f_frsize


def sqlite_directory(url: str) -> Path | None:
    """The directory of a SQLite database file named by ``url``; None for another database or
    one in memory."""
    if not url.startswith("sqlite:///"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0].removeprefix("file:")
    if not name or name == ":memory:":
        return None
    return Path(name if name.startswith("/") else f"/{name}").parent


@dataclass(frozen=True, kw_only=True)
class Place:
    """A directory the run writes to, and what it is for people."""

    path: Path
    role: str  # "the database's directory", "the working directory"


@dataclass(frozen=True, kw_only=True)
class SpaceGuard:
    """The directories a run writes to and the free space each must keep (``min_free``)."""

    places: Sequence[Place]
    min_free: int = DEFAULT_MIN_FREE

    def shortage(self) -> str | None:
        """What is short, as a clause ("only 1.0 MiB free in DIR (ROLE), below ..."); None when
        every directory has the margin free (or the check is off)."""
        if self.min_free <= 0:
            return None
        for place in self.places:
            try:
                free = free_bytes(place.path)
            except OSError:
                continue  # a directory we cannot look at: the writes themselves will say
            if free < self.min_free:
                return (
                    f"only {format_size(free)} free in {place.path} ({place.role}), below the "
                    f"{format_size(self.min_free)} batchrun keeps free (--min-free-space) so "
                    "that the answers it pays for can be saved"
                )
        return None

    def check(self) -> None:
        """Raise DiskSpaceError, before anything is sent, when a directory is short of space."""
        short = self.shortage()
        if short is not None:
            raise DiskSpaceError(
                f"{short}; nothing was sent. Free some space (or lower --min-free-space), then "
                "run the command again"
            )

    @property
    def store_directory(self) -> Path | None:
        """The database's directory, when the database is a local file."""
        return next((p.path for p in self.places if p.role == STORE_ROLE), None)


STORE_ROLE = "the database's directory"
CWD_ROLE = "the working directory"


def space_guard(
    store_url: str, min_free: int = DEFAULT_MIN_FREE, cwd: Path | None = None
) -> SpaceGuard:
    """The guard of a run on the store at ``store_url`` from ``cwd``: the database's directory
    (a SQLite file) and the working directory, once each when they share a filesystem."""
    places: list[Place] = []
    directory = sqlite_directory(store_url)
    if directory is not None:
        places.append(Place(path=directory, role=STORE_ROLE))
    places.append(Place(path=(cwd or Path.cwd()).resolve(), role=CWD_ROLE))
    return SpaceGuard(places=_one_per_filesystem(places), min_free=min_free)


class Reserve:
    """A file of ``RESERVE_BYTES`` next to the database, held while a run goes on and deleted
    before the run's last writes (the batch's status), so they find room on a full disk."""

    def __init__(self, directory: Path | None, size: int = RESERVE_BYTES) -> None:
        # One per process: two runs in one directory each hold and free their own.
        self.path = None if directory is None else directory / f"{_RESERVE}{os.getpid()}"
        self.size = size

    def __enter__(self) -> Reserve:
        if self.path is not None:
            _remove_stale_reserves(self.path.parent)
            try:
                _write_zeros(self.path, self.size)
            except OSError:
                self.release()  # no room even for this: the space check reports it
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the reserved space back (once; later calls do nothing)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


_RESERVE = ".batchrun-reserve-"


def _remove_stale_reserves(directory: Path) -> None:
    """Delete the reserves of runs that were killed before they could (their process is gone)."""
    for path in directory.glob(f"{_RESERVE}*"):
        pid = path.name.removeprefix(_RESERVE)
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def _write_zeros(path: Path, size: int) -> None:
    block = b"\0" * 65536
    with path.open("wb") as handle:
        for _ in range(0, size, len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())  # written for real: blocks held, not promised


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _one_per_filesystem(places: list[Place]) -> list[Place]:
    """The first place of each filesystem: two directories on one disk have the same free space."""
    seen: set[int] = set()
    kept: list[Place] = []
    for place in places:
        try:
            device = os.stat(_existing(place.path)).st_dev
        except OSError:
            kept.append(place)
            continue
        if device not in seen:
            seen.add(device)
            kept.append(place)
    return kept
