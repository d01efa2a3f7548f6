"""Which registered model versions a stage scores with: found by the pipeline while it plans (in the model registry,
kon_ray/tracking/registry.py), part of that stage's key, and handed to it in its run context (`RunContext.models`)
with the models loaded. Plain data: nothing here talks to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from kon_ray.model.score import ModelBundle


@dataclass(frozen=True)
class RegisteredModel:
    """One version of a registered model: `<dataset>-<population>` version `version`."""

    population: str
    name: str
    version: str
    run_id: Optional[str] = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> Dict[str, Any]:
        return {"population": self.population, "name": self.name, "version": self.version, "uri": self.uri,
                "run_id": self.run_id}


@dataclass(frozen=True)
class Resolution:
    """The registered models DriftCheck will score with, and why any population has none."""

    models: Tuple[RegisteredModel, ...] = ()
    missing: Tuple[Tuple[str, str], ...] = ()  # (population, why it has no model)
    # set by the pipeline just before the stage runs (kon_ray.tracking.registry.load_bundles): exactly those versions
    bundles: Tuple[ModelBundle, ...] = ()
    failed: Tuple[Tuple[str, str], ...] = ()  # (population, why its model could not be loaded)

    def key_material(self) -> Optional[Dict[str, str]]:
        """{population: "<name>/<version>"}: what the drift stage's key holds; None without any model."""
        return {m.population: f"{m.name}/{m.version}" for m in self.models} or None

    def reason(self) -> str:
        return "; ".join(f"{population}: {why}" for population, why in self.missing)
