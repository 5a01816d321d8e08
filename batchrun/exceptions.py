"""Every error a batchrun user can see.

    BatchrunError                 root: the CLI turns these into a message and an exit code
    ├── ConfigError               a setting, option or configuration file is unusable
    │   └── CatalogError          the model catalog (ours or the user's override) is invalid
    ├── UnknownModelError         a model name that is not in the catalog
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


class SimulatorError(BatchrunError):
    """The built-in simulator could not start or was given unusable settings."""
