"""`python -m kon_ray.synth +dataset=POLA [synth.rows=N synth.seed=S synth.drift=D synth.output=PATH ...]`.

Composes its own root config, conf/synth.yaml (the dataset and synth.*; kon_ray/synth/command.py), and writes the
synthetic dataset to synth.output (default dataset.path), and nothing else: no run folder is left under outputs/
(Hydra's is removed at the end, unless an unexpected error's traceback is in its run.log). A bad or missing
setting is one line on stderr and exit code 2; the generator's progress is on the terminal (one line per part).
"""

from __future__ import annotations

from omegaconf import DictConfig

from kon_ray.cli import EXIT_CODES, guarded, hydra_cli
from kon_ray.config import dataset_choices
from kon_ray.synth.command import CONFIG_NAME, SynthCommandConfig, check_target, load, register
from kon_ray.synth.writer import generate


def main(cfg: DictConfig) -> int:
    """Validate the config and generate; return the exit code."""

    def work() -> int:
        config = load(cfg)
        check_target(config)  # what is already at the output: replaced with a line, or refused (synth.overwrite)
        generate(config.dataset, config.synth)
        return 0

    return guarded(work)


def usage() -> str:
    """`python -m kon_ray.synth --help`."""

    return f"""usage: python -m kon_ray.synth +dataset=NAME [KEY=VALUE ...]

Generates a synthetic stand-in for a dataset ({", ".join(dataset_choices())}) from its declared schema
(conf/dataset/NAME.yaml), as Parquet parts and _manifest.json; the same seed and rows give the same bytes.

required:
  +dataset=NAME                 which dataset to draw

common overrides:
  synth.rows=N                  rows to draw (default: dataset.sample_rows; debug=tiny: 3,000)
  synth.output=PATH             where to write (default: dataset.path, i.e. data/NAME; local or s3://)
  synth.overwrite=true          replace a dataset already there with one of another size
  synth.drift=0                 no drift between the reference and current months (default 1: drift on purpose)
  synth.seed=S, synth.months=M, synth.rows_per_file=N, synth.workers=W

where things go: only the data (and _manifest.json) at synth.output; no run folder is left under outputs/.
{EXIT_CODES}. Hydra's own options: --hydra-help."""


cli = hydra_cli(CONFIG_NAME, main, register, schema=SynthCommandConfig, keeps_run_folder=False, usage=usage)


if __name__ == "__main__":
    cli()
