"""Files a person names on the command line (``results -o FILE``), written so nothing is lost.

``write_user_file`` is the one way the commands write such a file:

- an existing file is kept unless the command was given ``--force``;
- the database being read (and its ``-wal``/``-shm``/``-journal`` files) is never written to,
  even with ``--force``, whatever name leads to it (a symlink, a hard link, ``sqlite:///...``);
- the file is written atomically: a temporary file in the same folder, flushed to the disk,
  then renamed to the name. The name holds the whole new file or what it held before, never a
  part, after an error, a full disk, Ctrl-C or SIGTERM; the temporary file is removed.
- a device or a pipe (``/dev/stdout``, a FIFO) is written straight to: it holds no file to lose.

Every failure is an ``OutputFileError``: one line saying what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from batchrun.exceptions import OutputFileError

if TYPE_CHECKING:
    from types import FrameType

    from batchrun.store import Store

T = TypeVar("T")

# What a person can do about the errors the system gives when a file cannot be written.
_REASONS = {
    errno.ENOENT: "its folder does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the location is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EISDIR: "it is a directory",
    errno.ENAMETOOLONG: "the name is too long",
}
# os.link fails with these where the file system has no hard links: rename after a check instead.
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV})
_JOURNALS = ("-wal", "-shm", "-journal")


class _Target(enum.Enum):
    NEW = "new"
    REPLACE = "replace"
    STREAM = "stream"  # a device or a pipe


def write_user_file(
    path: Path,
    write: Callable[[IO[bytes]], T],
    *,
    force: bool = False,
    keep: Sequence[Path] = (),
) -> T:
    """Call ``write`` with a binary handle whose bytes become the file at ``path``, atomically;
    refuse an existing file unless ``force``, and any of ``keep`` always. Returns what
    ``write`` returns."""
    target, real = _check_target(path, force=force, keep=keep)
    with _sigterm_interrupts():
        if target is _Target.STREAM:
            return _write_stream(path, write)
        return _write_atomically(path, real, write, replace=target is _Target.REPLACE)


def database_files(store: Store) -> list[Path]:
    """The files of a SQLite store (the database and its journals); none for other databases."""
    url = store.engine.url
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return []
    if name.startswith("file:"):  # SQLite's URI form: file:path?mode=...
        name = name.removeprefix("file:").partition("?")[0]
    database = Path(name).expanduser()
    return [database, *(database.with_name(database.name + end) for end in _JOURNALS)]


def _check_target(shown: Path, *, force: bool, keep: Sequence[Path]) -> tuple[_Target, Path]:
    """What writing ``shown`` means and the real path to write (symlinks resolved), or an
    OutputFileError saying why it must not be written."""
    try:
        info: os.stat_result | None = shown.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise _failure(shown, exc) from exc
    real = Path(os.path.realpath(shown))
    _refuse_kept(shown, real, info, keep)
    if info is None:
        _check_folder(shown, real.parent)
        if os.path.lexists(shown):
            raise _exists(shown, "a link to a file that does not exist")
        return _Target.NEW, real
    if stat.S_ISDIR(info.st_mode):
        raise OutputFileError(
            str(shown), "this is a folder: give the name of a file to write (in it or elsewhere)"
        )
    if not stat.S_ISREG(info.st_mode):
        return _Target.STREAM, shown
    if not force:
        raise _exists(shown, "a file")
    return _Target.REPLACE, real


def _refuse_kept(
    shown: Path, real: Path, info: os.stat_result | None, keep: Sequence[Path]
) -> None:
    for kept in keep:
        if real == Path(os.path.realpath(kept)) or _same_file(info, kept):
            raise OutputFileError(
                str(shown),
                f"this is {kept}, a file of the database being read; writing there would "
                "destroy the database, so it is never done, even with --force. "
                "Choose another file name.",
            )


def _same_file(info: os.stat_result | None, other: Path) -> bool:
    """Whether ``info`` is of the file ``other`` (a hard link has another name, the same inode)."""
    if info is None:
        return False
    try:
        theirs = other.stat()
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (info.st_dev, info.st_ino)


def _check_folder(shown: Path, folder: Path) -> None:
    if not folder.exists():
        where = shown.parent
        raise OutputFileError(
            str(shown),
            f"the folder {where} does not exist: create it first (mkdir -p {where}) or choose "
            "another place",
        )
    if not folder.is_dir():
        raise OutputFileError(str(shown), f"{shown.parent} is a file, not a folder")


def _exists(shown: Path, what: str) -> OutputFileError:
    return OutputFileError(
        str(shown),
        f"already exists ({what}) and was left as it is: add --force to replace it, "
        "or choose another file name",
    )


def _write_atomically(
    shown: Path, real: Path, write: Callable[[IO[bytes]], T], *, replace: bool
) -> T:
    temporary = real.with_name(f".{real.name}.{secrets.token_hex(4)}.partial")
    try:
        # 0o666 less the umask: the permissions a plain open() would give the file
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _failure(shown, exc) from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            result = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(shown, temporary, real, replace=replace)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _failure(shown, exc) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(real.parent)
    return result


def _publish(shown: Path, temporary: Path, real: Path, *, replace: bool) -> None:
    """Give the written file its name: over the old one with ``replace``, else only if the name
    is still free (a hard link fails when another process took the name meanwhile)."""
    if replace:
        os.replace(temporary, real)
        return
    try:
        os.link(temporary, real)
    except FileExistsError:
        raise _exists(shown, "made by something else while this was written") from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(real):
            raise _exists(shown, "made by something else while this was written") from None
        os.replace(temporary, real)
        return
    temporary.unlink()


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry of the renamed file too, where the system allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _write_stream(shown: Path, write: Callable[[IO[bytes]], T]) -> T:
    try:
        with shown.open("wb") as handle:
            result = write(handle)
    except OSError as exc:
        raise _failure(shown, exc, streamed=True) from exc
    return result


def _failure(shown: Path, exc: OSError, *, streamed: bool = False) -> OutputFileError:
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    after = (
        "what was written before the error may be incomplete"
        if streamed
        else "nothing was written, and a file already there is unchanged"
    )
    return OutputFileError(str(shown), f"cannot write it: {reason}; {after}")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the file is written, SIGTERM interrupts as Ctrl-C does, so the temporary file is
    removed (by default SIGTERM ends the process at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
