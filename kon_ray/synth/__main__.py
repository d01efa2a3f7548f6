"""`python -m kon_ray.synth +dataset=POLA [synth.rows=N synth.seed=S synth.drift=D synth.output=PATH ...]`.

Composes its own root config, conf/synth.yaml (the dataset and synth.*; kon_ray/synth/command.py), and writes the
synthetic dataset to synth.output (default dataset.path), and nothing else: no run folder is left under outputs/
(Hydra's is removed at the end, unless an unexpected error's traceback is in its run.log). A bad or missing
setting is one line on stderr and exit code 2; the generator's progress is on the terminal (one line per part).
"""

from __future__ import annotations

from omegaconf import DictConfig

from kon_ray.cli import guarded, hydra_cli
from kon_ray.synth.command import CONFIG_NAME, SynthCommandConfig, load, register


def main(cfg: DictConfig) -> int:
    """Validate the config and generate; return the exit code."""
    from kon_ray.synth import generate

    def work() -> int:
        config = load(cfg)
        generate(config.dataset, config.synth)
        return 0

    return guarded(work)


cli = hydra_cli(CONFIG_NAME, main, register, schema=SynthCommandConfig, keeps_run_folder=False)


if __name__ == "__main__":
    cli()
