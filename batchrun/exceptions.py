"""Every error a batchrun user can see.

    BatchrunError                 root: the CLI turns these into a message and an exit code
    ├── ConfigError               a setting, option or configuration file is unusable
    │   └── CatalogError          the model catalog (ours or the user's override) is invalid
    ├── UnknownModelError         a model name that is not in the catalog
    ├── JobFileError              a job file that cannot be used at all (not JSONL, unreadable)
    │   └── StrictModeError       --strict: the file has invalid lines, nothing was sent
    ├── StoreError                the database cannot be opened, migrated, read or written
    ├── DiskSpaceError            too little free disk space to save what a run would pay for
    ├── UnsavedFileError          a file of unsaved results cannot be read or imported
    ├── OutputFileError           a file the user named cannot be written (exists, is the
    │                             database, a directory, in a missing folder, or the disk refused)
    ├── BatchMoveError            a batch cannot take that status from its own (canceled meanwhile)
    ├── BatchNotFoundError        no batch with that id or name
    └── SimulatorError            the built-in simulator could not start or was misused

Third-party errors are wrapped with ``raise ... from exc`` in the module that owns the dependency.
"""

from __future__ import annotations


class BatchrunError(Exception):
    """Root of every error batchrun reports to a person."""

    exit_code: int = 2


class ConfigError(BatchrunError):
    """A setting, option or configuration file cannot be used."""


class CatalogError(ConfigError):
    """The model catalog, or a user's override of it, is invalid."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class UnknownModelError(BatchrunError):
    """A model name that the catalog does not know."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model {name!r}; known models: {', '.join(known)}. "
            "Run `batchrun models` to list them."
        )
        self.name = name


class JobFileError(BatchrunError):
    """A job file that cannot be used at all: missing, a directory, empty, binary, not JSONL."""

    def __init__(self, path: str, message: str, line_no: int | None = None) -> None:
        where = f"{path}:{line_no}" if line_no is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line_no = line_no


class StrictModeError(JobFileError):
    """--strict refused a file with invalid lines before sending anything."""

    def __init__(self, path: str, count: int, first: str) -> None:
        super().__init__(
            path,
            f"{count} invalid line(s); --strict sends nothing when any line is invalid. "
            f"First: {first}",
        )
        self.count = count


class StoreError(BatchrunError):
    """The database cannot be opened, migrated, read or written."""


class DiskSpaceError(BatchrunError):
    """Too little free space where a run writes (the database's or the working directory) to
    save the answers it would pay for: nothing was sent."""

    exit_code = 1


class UnsavedFileError(BatchrunError):
    """A file of results a run could not save cannot be read, or belongs to another database."""


class OutputFileError(BatchrunError):
    """A file the user asked batchrun to write cannot be written; nothing was written to it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class BatchMoveError(BatchrunError):
    """A batch cannot take a status from the one it has (``batchrun.status.BATCH_MOVES``)."""

    def __init__(self, batch_id: str, old: str, new: str) -> None:
        hint = " (it was canceled meanwhile: run its file again for a new batch)"
        super().__init__(
            f"batch {batch_id} is {old} and cannot become {new}"
            + (hint if old == "canceled" else "")
        )
        self.batch_id, self.old, self.new = batch_id, old, new


class BatchNotFoundError(BatchrunError):
    """No batch has that id or name."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no batch {ref!r} in this database; `batchrun batches` lists them")
        self.ref = ref


class SimulatorError(BatchrunError):
    """The built-in simulator could not start or was given unusable settings."""
