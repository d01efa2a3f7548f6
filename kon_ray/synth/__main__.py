"""`python -m kon_ray.synth +dataset=POLA [synth.rows=N synth.seed=S synth.drift=D synth.output=PATH ...]`.

Writes the synthetic dataset to synth.output (default dataset.path). A bad or missing setting is one line on
stderr and exit code 2; the generator's progress goes to the log (one line per part).
"""

from __future__ import annotations

from omegaconf import DictConfig

from kon_ray.cli import guarded, hydra_cli
from kon_ray.config import load_config, register_configs


def main(cfg: DictConfig) -> int:
    """Validate the config and generate; return the exit code."""
    from kon_ray.synth import generate

    def work() -> int:
        config = load_config(cfg)
        generate(config.dataset, config.synth)
        return 0

    return guarded(work)


cli = hydra_cli("config", main, register_configs)


if __name__ == "__main__":
    cli()
