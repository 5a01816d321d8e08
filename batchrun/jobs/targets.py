"""The models a line runs on, and why some of them cannot run it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from batchrun.catalog import Catalog, ModelInfo
from batchrun.jobs.errors import Invalid, did_you_mean
from batchrun.jobs.jsonvalue import describe as _got

_NO_REASONS: Mapping[str, str] = MappingProxyType({})


class Targets:
    """The catalog, the --models override, and the block kinds only some models accept."""

    def __init__(self, catalog: Catalog, models: Sequence[str] | None) -> None:
        self.catalog = catalog
        # Validated here so an unknown --models name fails before the first line is read.
        self.forced: tuple[ModelInfo, ...] | None = (
            tuple(catalog.get(name) for name in models) if models else None
        )
        self.varying = _varying_kinds(catalog)

    def resolve(self, name: Any) -> tuple[ModelInfo, ...]:
        """The models a line naming ``name`` (or no model: None) runs on."""
        if name is not None:
            model = self._model(name)
            if self.forced is None:
                return (model,)
        if self.forced is None:
            raise Invalid("model", "no model: name one in the line or pass --models")
        return self.forced

    def invalid_for(
        self, targets: Sequence[ModelInfo], max_tokens: int, kinds: set[str]
    ) -> Mapping[str, str]:
        """Model name -> why it cannot run a line, for the targets that cannot."""
        checked = sorted(kinds & self.varying.keys())
        reasons: dict[str, str] = {}
        for model in targets:
            why = self._reasons(model, checked, max_tokens)
            if why:
                reasons[model.name] = "; ".join(why)
        return reasons or _NO_REASONS

    def _reasons(self, model: ModelInfo, checked: list[str], max_tokens: int) -> list[str]:
        why = [
            f"{model.name} does not accept {kind} input (only {self.varying[kind]})"
            for kind in checked
            if not model.accepts(kind)
        ]
        refused = model.refuses_max_tokens(max_tokens)
        if refused is not None:
            why.append(refused)
        return why

    def _model(self, name: Any) -> ModelInfo:
        if not isinstance(name, str):
            raise Invalid("model", f"model must be a string, got {_got(name)}")
        model = self.catalog.models.get(name)
        if model is None:
            known = self.catalog.names()
            raise Invalid(
                "model",
                f"unknown model {name!r}{did_you_mean(name, known)}; "
                f"known models: {', '.join(known)}",
            )
        return model


def _varying_kinds(catalog: Catalog) -> dict[str, str]:
    """Block kinds some models accept and others do not -> "X does" / "X, Y do"."""
    models = list(catalog)
    every = {kind for model in models for kind in model.content_kinds}
    varying: dict[str, str] = {}
    for kind in sorted(every):
        takers = [model.name for model in models if model.accepts(kind)]
        if len(takers) < len(models):
            varying[kind] = f"{', '.join(takers)} {'does' if len(takers) == 1 else 'do'}"
    return varying
