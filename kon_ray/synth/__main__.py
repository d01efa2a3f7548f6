"""`python -m kon_ray.synth +dataset=POLA [synth.rows=N synth.seed=S synth.drift=D synth.output=PATH ...]`.

Writes the synthetic dataset to synth.output (default dataset.path). A bad or missing setting is one line on
stderr and exit code 2; the generator's progress goes to the log (one line per part).
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from kon_ray.config import load_config, register_configs
from kon_ray.errors import ConfigError, KonError

log = logging.getLogger("kon_ray.synth")

_task_started = False  # set once Hydra has composed the config and handed it to us


def main(cfg: DictConfig) -> int:
    """Validate the config and generate; return the exit code."""
    from kon_ray.synth import generate

    try:
        config = load_config(cfg)
        generate(config.dataset, config.synth)
        return 0
    except KonError as exc:
        print(f"{exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was published", file=sys.stderr)
        return 130


@hydra.main(config_path="../../conf", config_name="config", version_base=None)
def _hydra_entry(cfg: DictConfig) -> None:
    global _task_started
    _task_started = True
    code = main(cfg)
    if code:
        sys.exit(code)


def cli() -> None:
    register_configs()
    try:
        _hydra_entry()
    except SystemExit as exit_:
        # Hydra reports a composition error (unknown dataset, bad key) itself and exits 1 before our task runs;
        # those are configuration errors, exit code 2 like every other.
        if exit_.code == 1 and not _task_started:
            sys.exit(ConfigError.exit_code)
        raise


if __name__ == "__main__":
    cli()
