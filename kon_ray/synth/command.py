"""The generator's own root config (conf/synth.yaml): the dataset it draws and the synth.* settings, nothing else.

`python -m kon_ray.synth` composes conf/synth.yaml, not the pipeline's conf/config.yaml: it needs no model,
cluster, drift, tracking, stages or output_dir, and a key the generator does not read is an unknown key on its
command line. The `debug` group is shared with the pipeline (one word, `debug=tiny`, makes both tiny); the
generator reads that overlay's `dataset` part (dataset.sample_rows: its default rows) and leaves the sections only
the pipeline has (model, cluster, drift) unread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kon_ray import storage
from kon_ray.config import (
    DatasetConfig,
    _schema,
    check_known_keys,
    load_root,
    no_dataset_message,
    register_configs,
)
from kon_ray.errors import ConfigError
from kon_ray.synth.config import SynthConfig
from kon_ray.synth.writer import MANIFEST

log = logging.getLogger(__name__)

CONFIG_NAME = "synth"  # conf/synth.yaml
SECTIONS = ("dataset", "synth")  # what the generator reads of the composed config


@dataclass(frozen=True)
class SynthCommandConfig:
    dataset: DatasetConfig = MISSING
    synth: SynthConfig = field(default_factory=SynthConfig)


def register() -> None:
    """The dataset group's schema (base_dataset) and `base_synth`, the synth section's schema (conf/synth.yaml)."""
    register_configs()
    ConfigStore.instance().store(name="base_synth", node=_schema(SynthConfig), package="synth")


def load(cfg: DictConfig) -> SynthCommandConfig:
    """Validate the generator's sections of a composed conf/synth.yaml; ConfigError naming the bad key."""
    if "dataset" not in cfg or OmegaConf.is_missing(cfg, "dataset"):
        raise ConfigError(no_dataset_message("kon_ray.synth"))
    own = OmegaConf.masked_copy(cfg, [section for section in SECTIONS if section in cfg])
    check_known_keys(own, SynthCommandConfig)
    # the schema's root: to_object builds it
    typed = DictConfig(OmegaConf.merge(OmegaConf.structured(SynthCommandConfig), own))
    config: SynthCommandConfig = load_root(typed, SynthCommandConfig, "kon_ray.synth")
    return config


def check_target(config: SynthCommandConfig) -> None:
    """Before anything is written: say what the generator is about to replace, and refuse (exit 2) to replace,
    without synth.overwrite=true, a dataset of another size or Parquet data it did not write (no _manifest.json).

    A smaller sample written over a bigger one (`debug=tiny` after `make run`) would otherwise shrink every later
    run of the dataset without a word; a same-size dataset with other settings (seed, drift) is replaced with a
    line that says so, as regenerating is what the command is for."""

    dataset, synth = config.dataset, config.synth
    target = synth.output or dataset.path
    parts = storage.list_files(target) if storage.exists(target) else []
    if not parts:
        return
    rows = synth.rows or dataset.sample_rows
    manifest_path = storage.join(target, MANIFEST)
    manifest = storage.read_json(manifest_path) if storage.exists(manifest_path) else None
    if manifest is None:
        found = f"{len(parts)} Parquet file(s) the generator did not write (no {MANIFEST})"
    else:
        found = (f"a generated {manifest.get('dataset', dataset.name)} dataset of {manifest.get('rows', '?'):,} rows"
                 f" (seed {manifest.get('seed')}, drift {manifest.get('drift', 0):g})")
    same_size = manifest is not None and manifest.get("rows") == rows
    if not same_size and not synth.overwrite:
        raise ConfigError(
            f"{target} already holds {found}; this command writes {rows:,} rows: add synth.overwrite=true to replace"
            " it, or synth.output=PATH to write elsewhere"
        )
    log.info("replacing %s at %s with %s rows (seed %d, drift %g)", found, target, f"{rows:,}", synth.seed,
             synth.drift)
