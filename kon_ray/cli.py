"""The edge every kon_ray command shares (`kon_ray.run`, `kon_ray.drift`, `kon_ray.synth`): a Hydra app over
conf/ whose user errors become one line and a documented exit code (kon_ray/errors.py).

- `guarded(work)` runs a command's body: KonError -> its code, Ctrl-C -> 130, anything else -> 1 with one line on
  the terminal and the traceback only in the run's log file.
- `hydra_cli(config_name, main, register)` builds the `cli()`: Hydra's own composition errors (unknown key, bad
  override, unknown dataset) exit 2 like every other config error; in a multirun a failed job does not cancel the
  others, and the sweep exits with the first failure's code.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Callable, List

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from kon_ray.config import CONF_DIR
from kon_ray.errors import ConfigError, KonError

log = logging.getLogger("kon_ray")


def guarded(work: Callable[[], int]) -> int:
    """Run `work` and return its exit code, turning every failure into one line and a documented code."""
    try:
        return work()
    except KonError as exc:
        log.error("%s: %s", exc.kind, exc)
        keep_traceback_in_log_file()
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted: nothing was published")
        return 130
    except Exception as exc:  # a bug or an infrastructure fault: one line here, the traceback in the log file
        log.error("unexpected error: %s: %s (traceback in %s)", type(exc).__name__, exc, log_file() or "the log")
        keep_traceback_in_log_file()
        return 1


def log_file() -> str | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def keep_traceback_in_log_file() -> None:
    """The traceback goes to the run's log file only; the terminal gets the one line logged by `guarded`."""
    path = log_file()
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(traceback.format_exc())


def in_multirun() -> bool:
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _preflight(config_name: str, argv: List[str]) -> None:
    """Compose once before Hydra does, so that a composition error (unknown key, unknown option, bad value type)
    is one line and exit 2; Hydra itself would print a multi-line report. Sweeps (-m) are left to Hydra."""
    if any(arg in ("-m", "--multirun") for arg in argv):
        return
    overrides = [arg for arg in argv if not arg.startswith("-") and "=" in arg and not arg.startswith("hydra.")]
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"kon_ray: {ConfigError.kind}: {_one_line(str(exc))}", file=sys.stderr)
        sys.exit(ConfigError.exit_code)


def _one_line(message: str) -> str:
    """Hydra's report in one line: its first line, plus the available options when it lists them."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else message
    for line in lines[1:3]:  # the reason, when Hydra gives one on the next lines
        if line.startswith(("full_key", "reference_type", "object_type", "Available options", "Set the environment")):
            break
        first += f" {line}"
    if "Available options" in message:
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options")) + 1
        options = []
        for line in lines[start:]:
            if line.startswith("Config search path"):
                break
            if not line.startswith("base_"):
                options.append(line)
        first += f" (available: {', '.join(options)})"
    return first


def hydra_cli(config_name: str, main: Callable[[DictConfig], int], register: Callable[[], None]) -> Callable[[], None]:
    """The command-line entry of a Hydra app over conf/<config_name>.yaml whose body is `main(cfg) -> exit code`."""
    started: List[bool] = []
    failed_jobs: List[int] = []

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base=None)
    def entry(cfg: DictConfig) -> None:
        from kon_ray.terminal import KonTerminal

        started.append(True)
        with KonTerminal(log_file()):  # only kon_ray's lines on the terminal; Ray's, MLflow's, warnings: run.log
            code = main(cfg)
        if code and code != 130 and in_multirun():
            failed_jobs.append(code)  # one failed sweep job must not cancel the others
            return
        if code:
            sys.exit(code)

    def cli() -> None:
        register()
        _preflight(config_name, sys.argv[1:])
        try:
            entry()
        except SystemExit as exit_:
            # Hydra reports a composition error itself and exits 1 before our task runs: a config error.
            if exit_.code == 1 and not started:
                sys.exit(ConfigError.exit_code)
            raise
        if failed_jobs:
            log.error("%d sweep job(s) failed (see sweep_summary.json)", len(failed_jobs))
            sys.exit(failed_jobs[0])

    return cli
