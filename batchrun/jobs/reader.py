"""Reading a job file: one JobSpec per good line, one LineError per bad line, in file order.

This is the client-side check; it mirrors what MiniMax refuses with a 400 so that a bad line is
reported before anything is sent, and it deliberately does not import the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from batchrun.catalog import Catalog, ModelInfo
from batchrun.exceptions import JobFileError
from batchrun.jobs.errors import Invalid
from batchrun.jobs.filecheck import check_file, nonblank_lines
from batchrun.jobs.formats import decode, line_params, read_custom_id, read_expect
from batchrun.jobs.idindex import IdIndex
from batchrun.jobs.params import check_params
from batchrun.jobs.spec import JobSpec, LineError, ReadOptions, content_hash
from batchrun.jobs.targets import Targets


def read_jobs(path: Path, catalog: Catalog, options: ReadOptions) -> Iterator[JobSpec | LineError]:
    """Stream ``path`` and yield one JobSpec or LineError per non-blank line, in file order."""
    check_file(path)
    reader = _Reader(str(path), catalog, options)
    return reader.read(path)


class _Reader:
    """Per-file state: target models, and the custom_id hashes seen so far."""

    def __init__(self, where: str, catalog: Catalog, options: ReadOptions) -> None:
        self.where = where
        self.default_max_tokens = options.default_max_tokens
        self.targets = Targets(catalog, options.models)
        self.seen = IdIndex()

    def read(self, path: Path) -> Iterator[JobSpec | LineError]:
        """Yield a result per non-blank line of ``path``."""
        try:
            with path.open("rb") as stream:
                yield from self._read_stream(stream)
        except OSError as exc:
            raise JobFileError(self.where, f"cannot read the file: {exc.strerror or exc}") from exc

    def _read_stream(self, stream: IO[bytes]) -> Iterator[JobSpec | LineError]:
        for line_no, line in nonblank_lines(stream):
            yield self.parse_line(line, line_no)

    def parse_line(self, line: bytes, line_no: int) -> JobSpec | LineError:
        """One JobSpec, or the first problem found as a LineError."""
        custom_id: str | None = None
        try:
            obj = decode(line)
            custom_id, id_field = read_custom_id(obj)
            self._check_unique(custom_id, id_field, line_no)
            return self._build(obj, custom_id, line_no)
        except Invalid as exc:
            return LineError(
                path=self.where,
                line_no=line_no,
                field=exc.field,
                message=exc.message,
                custom_id=custom_id,
            )

    def _check_unique(self, custom_id: str, id_field: str, line_no: int) -> None:
        first = self.seen.first_line(custom_id, line_no)
        if first != line_no:
            raise Invalid(
                id_field,
                f"duplicate custom_id {custom_id!r}: line {first} already uses it; "
                "every custom_id must be unique within the file",
            )

    def _build(self, obj: dict[str, Any], custom_id: str, line_no: int) -> JobSpec:
        params, prefix = line_params(obj)
        expect = read_expect(obj)
        try:
            model_name, targets, kinds = self._complete(params)
        except Invalid as exc:
            raise exc.under(prefix) from None
        return JobSpec(
            line_no=line_no,
            custom_id=custom_id,
            params=params,
            model=model_name,
            invalid_for=self.targets.invalid_for(targets, params["max_tokens"], kinds),
            content_hash=content_hash(params),
            expect=expect,
        )

    def _complete(self, params: dict[str, Any]) -> tuple[Any, tuple[ModelInfo, ...], set[str]]:
        """Take the model out of ``params``, default max_tokens, and check every parameter."""
        model_name = params.pop("model", None)
        targets = self.targets.resolve(model_name)
        params.setdefault("max_tokens", self.default_max_tokens)
        kinds = check_params(params)
        params.pop("stream", None)  # accepted, but batchrun always streams
        return model_name, targets, kinds
