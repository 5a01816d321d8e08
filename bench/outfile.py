"""Where a benchmark's table goes: ``--out FILE`` (each script has its default under
bench/results/), never over an existing file unless ``--force`` says so, checked before the
benchmark runs (a long run's figures are not lost to a name taken), and written atomically."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def add_out(parser: argparse.ArgumentParser, default: Path | None) -> None:
    """``--out`` (the table's file) and ``--force`` (replace it if it exists)."""
    shown = f" (default {default})" if default is not None else ""
    parser.add_argument("--out", type=Path, default=default, help=f"the table's file{shown}")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")


def check_new(out: Path, *, force: bool) -> None:
    """Stop, saying why, if ``out`` exists and ``force`` is not given."""
    if out.exists() and not force:
        raise SystemExit(f"{out} exists: choose another --out, or add --force to replace it")


def write_table(out: Path, lines: list[str] | str, *, force: bool) -> None:
    """Write the table to ``out`` atomically (the whole file or none), never over an existing
    one unless ``force``; then print it."""
    text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    check_new(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as file:
        file.write(text)
    partial = Path(file.name)
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o666 & ~umask)  # as a plain open() makes it (a temporary file is 0600)
    if force:
        os.replace(partial, out)
    else:
        try:
            os.link(partial, out)  # fails, never replaces, if the name was taken meanwhile
        except FileExistsError:
            taken = f"{out} appeared while the benchmark ran: the table is in {partial}"
            raise SystemExit(taken) from None
        partial.unlink()
    print(text, end="")
