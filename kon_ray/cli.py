"""The edge every kon_ray command shares (`kon_ray.run`, `kon_ray.drift`, `kon_ray.synth`): a Hydra app over
conf/ whose user errors become one line and a documented exit code (kon_ray/errors.py).

- `guarded(work)` runs a command's body: KonError -> its code, Ctrl-C -> 130 and one "interrupted" line (the
  pipeline's names the stage it stopped; also when Ray wrapped the interruption), anything else -> 1 with one line
  on the terminal and the traceback only in the run's log file.
- `hydra_cli(config_name, main, register, schema)` builds the `cli()`: the command line is checked against the
  command's schema before Hydra runs (an unknown key, with or without `+`, names the closest valid key; a value of
  the wrong type names the expected type) and Hydra's own composition errors (bad override, unknown dataset) exit 2
  like every other config error; in a multirun a failed job does not cancel the others, and the sweep exits with
  the first failure's code.
- A run that never started (a config error, missing inputs) leaves no run folder behind, and neither does the
  generator (`RunFolder`, `started_work`, `remove_unstarted_run_folder`).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import subprocess
import sys
import traceback
from typing import Callable, List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from kon_ray.config import (
    CONF_DIR,
    KINDS,
    composed_schema,
    describe_type,
    kind_fields,
    no_dataset_message,
    schema_type,
    unknown_key_error,
)
from kon_ray.errors import ClusterError, ConfigError, KonError
from kon_ray.execution import interrupted_in
from kon_ray.terminal import KonTerminal

log = logging.getLogger(__name__)


def guarded(work: Callable[[], int]) -> int:
    """Run `work` and return its exit code, turning every failure into one line and a documented code."""
    try:
        return work()
    except KonError as exc:
        log.error("%s: %s", exc.kind, exc)
        keep_traceback_in_log_file()
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return interrupted(str(exc) if isinstance(exc, Interrupted) else INTERRUPTED)
    except Exception as exc:  # a bug or an infrastructure fault: one line here, the traceback in the log file
        if _wraps_interruption(exc):  # Ctrl-C that came back through a wrapper kon_ray did not unwrap
            return interrupted()
        failed = _ray_failure(exc)
        if failed is not None:  # Ray itself gave way under the command (exit 5, as for a Ray that does not start)
            log.error("%s: %s", ClusterError.kind, failed)
            keep_traceback_in_log_file()
            return ClusterError.exit_code
        log.error("unexpected error: %s: %s (traceback in %s)", type(exc).__name__, exc, log_file() or "the log")
        keep_traceback_in_log_file()
        return 1


INTERRUPTED = "interrupted: nothing was published"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the line that says what it stopped: the pipeline names the stage it interrupted and the stages
    that stay published (kon_ray/run.py); a command without stages says INTERRUPTED."""


def interrupted(line: str = INTERRUPTED) -> int:
    """Ctrl-C, in any stage and wherever it surfaced (the driver, a Ray task, a Ray Train worker): one line, and 130.
    The stage that was running published nothing (its staging folder is removed); finished stages stay published
    and are reused when the same command runs again."""
    log.error(line)
    return 130


# Ray's errors that mean Ray itself failed (a raylet, a node, a worker process, an object's owner), not the code
RAY_FAILURES = ("LocalRayletDiedError", "NodeDiedError", "RaySystemError", "WorkerCrashedError", "ObjectLostError",
                "OwnerDiedError")


def _ray_failure(exc: BaseException) -> Optional[str]:
    """The one line for an error that is Ray failing under the command (found through the causes), else None."""
    if "ray" not in sys.modules:
        return None  # a command that never started Ray
    import ray.exceptions

    kinds = tuple(getattr(ray.exceptions, name) for name in RAY_FAILURES)
    current: Optional[BaseException] = exc
    seen = 0
    while current is not None and seen < 20:
        if isinstance(current, kinds):
            reason = " ".join(str(current).split())[:300] or type(current).__name__
            return (f"Ray failed under the command ({type(current).__name__}: {reason}); Ray's own logs are in its"
                    f" session folder, named in {log_file() or 'run.log'}. On a machine that runs another Ray, join"
                    " it with cluster.address=auto, or stop it (ray stop) and run again")
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


def _wraps_interruption(exc: BaseException) -> bool:

    return interrupted_in(exc)


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


# The watcher `last_words` starts: it waits for the command's "done"; when the pipe closes without it, the
# command's process ended below Python (Ray's core worker exits the process when its raylet dies; a SIGKILL; a
# native crash) with nothing on the terminal, so the watcher says so, naming the log file that holds the rest.
_WATCHER = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle and report
said = sys.stdin.buffer.read()
if said.endswith(b"done"):
    sys.exit(0)
log = sys.argv[1]
try:
    with open(log, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 20000))
        tail = handle.read().decode("utf-8", "replace")
except OSError:
    tail = ""
ray = any(word in tail for word in ("raylet", "Raylet", "core_worker", "CoreWorker", "gcs_server"))
why = "its local Ray failed (the raylet died) and ended it" if ray else "it was killed, or native code ended it"
sys.stderr.write(f"kon_ray: unexpected error: the command stopped without finishing: {why}; Ray's messages and"
                 f" the rest are in {log}\n")
sys.stderr.flush()
"""
_watcher: List[subprocess.Popen] = []


def last_words(log_path: Optional[str]) -> None:
    """Start, once per process, the watcher that reports a death Python never sees (module comment above). It
    holds the terminal's stderr as it is now (start it before `KonTerminal` sends fd 2 to the log file) and costs
    one small process that waits; a normal exit (sys.exit, an exception, the end) tells it "done" (atexit)."""
    if _watcher or not log_path:
        return
    try:
        watcher = subprocess.Popen([sys.executable, "-S", "-c", _WATCHER, log_path], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL)
    except OSError:
        return  # no watcher: the command itself is unaffected
    _watcher.append(watcher)
    atexit.register(_said_done)


def _said_done() -> None:
    for watcher in _watcher:
        try:
            assert watcher.stdin is not None
            watcher.stdin.write(b"done")
            watcher.stdin.close()
            watcher.wait(5)  # it exits at once; reaped here, no "subprocess still running" warning at our exit
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass


def _stop_ray() -> None:
    """Stop the command's Ray while the terminal is still kon_ray's: what Ray's C++ writes as it shuts down (after a
    failure, "Attempting to recover lost objects..." lines) lands in run.log, not on the terminal after the last
    line. Without this, Ray stops at the interpreter's exit, once the terminal is restored."""
    if "ray" not in sys.modules:
        return
    import ray

    try:
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - shutting down a Ray that already failed must not change the exit code
        log.debug("ray.shutdown failed", exc_info=True)


def in_multirun() -> bool:
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _preflight(config_name: str, argv: List[str], schema: Optional[type] = None) -> None:
    """Check the command line before Hydra does, so that every mistake in it is one line and exit 2 (Hydra itself
    would print a multi-line report, or advise `+key=...` for a typo, or let `+model.typo=1` through to fail later):
    - every key set on the command line must be in the schema, with or without `+` (a sweep's too); a `cluster.*`
      key must be in the chosen cluster kind's schema (`_kind_schemas`);
    - then (not for sweeps) the config is composed once; a value of the wrong type names the expected type."""
    overrides = [arg for arg in argv if not arg.startswith("-") and "=" in arg]
    parsed = _parse(overrides)
    schemas = [] if schema is None else _kind_schemas(config_name, overrides, parsed, schema)
    for checked in schemas:
        for override in parsed:
            key = override.key_or_group
            if override.package is not None or _is_hydra(key) or _is_group(key):
                continue  # `+dataset=POLA`, `cluster=ray`, `hydra.job.env_set.X=...`: Hydra checks those
            error = unknown_key_error(key, checked)
            if error is not None:
                _config_error(str(error))
    if any(arg in ("-m", "--multirun") for arg in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if len(parsed) == len(overrides):
        task = [text for text, override in zip(overrides, parsed) if not _is_hydra(override.key_or_group)]
    else:
        task = [arg for arg in overrides if not _is_hydra(arg.lstrip("+~"))]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            compose(config_name=config_name, overrides=task)
    except (HydraException, OmegaConfBaseException) as exc:
        _config_error(_explain(exc, parsed, schemas[0] if schemas else None))


def _kind_schemas(config_name: str, overrides: List[str], parsed: list, schema: type) -> List[type]:
    """The schemas the command line's keys are checked against: `schema` with each field that holds one of several
    kinds (`cluster`) typed as the kind chosen, found by composing the command line's config choices alone (so an
    experiment that picks the cluster counts too), once per value of a swept `cluster=a,b`. `schema` itself when no
    key of such a field is set, or when the choices do not compose (the full composition then says why)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    fields = [name for name in kind_fields(schema)
              if any(o.key_or_group.startswith(name + ".") for o in parsed if o.package is None)]
    if not fields or len(parsed) != len(overrides):
        return [schema]
    choices = [text for text, o in zip(overrides, parsed)
               if (o.package is not None or _is_group(o.key_or_group)) and not _is_hydra(o.key_or_group)
               and o.key_or_group not in fields and not o.is_sweep_override()]
    variants: List[List[str]] = [[]]
    for name in fields:  # the field's own choice, swept or not (the last one given wins, as in Hydra)
        given = [o for o in parsed if o.key_or_group == name and o.package is None]
        if given:
            values = list(given[-1].sweep_string_iterator()) if given[-1].is_sweep_override() else \
                [given[-1].get_value_element_as_str()]
            variants = [variant + [f"{name}={value}"] for variant in variants for value in values]
    schemas = []
    for variant in variants:
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
                cfg = compose(config_name=config_name, overrides=choices + variant)
        except (HydraException, OmegaConfBaseException):
            return [schema]
        schemas.append(composed_schema(cfg, schema))
    return schemas


def _config_error(message: str) -> None:
    print(f"kon_ray: {ConfigError.kind}: {message}", file=sys.stderr)
    sys.exit(ConfigError.exit_code)


def _parse(overrides: List[str]) -> list:
    """Hydra's own reading of the overrides ([] when one does not parse: composing then reports it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []


def _is_hydra(key: str) -> bool:
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _is_group(key: str) -> bool:
    """Whether `key` names a config group (conf/<group>/ or a group of the ConfigStore): `dataset`, `model`..."""
    from hydra.core.config_store import ConfigStore

    return (CONF_DIR / key).is_dir() or isinstance(ConfigStore.instance().repo.get(key), dict)


def _explain(exc: Exception, parsed: list, schema: Optional[type]) -> str:
    """Hydra's composition error as the one line a user needs."""
    from omegaconf.errors import MissingMandatoryValue, ValidationError

    cause: Optional[BaseException] = exc
    while cause is not None:
        key = getattr(cause, "full_key", None)
        if isinstance(cause, MissingMandatoryValue) and key == "dataset":
            return no_dataset_message()  # `dataset.path=...` without `+dataset=NAME`
        if isinstance(cause, ValidationError) and key and schema is not None:
            given = [o for o in parsed if o.key_or_group == key]
            try:
                expected = describe_type(schema_type(schema, key))
            except KeyError:
                break
            if given:
                return f"{key}: expected {expected}, got {given[-1].get_value_element_as_str()!r}"
            return f"{key}: expected {expected} ({_one_line(str(cause))})"
        cause = cause.__cause__ or cause.__context__
    wrong_kind = re.search(r"^In '(\w+)/.*?(\w+) is not a subclass of (\w+)", str(exc), re.S)
    if wrong_kind:  # `python -m kon_ray.drift cluster=ray`: a kind the command's schema does not take
        group, chosen, expected = wrong_kind.groups()
        kind = next((k for kinds in KINDS.values() for k, s in kinds.items() if s.__name__ == expected), None)
        takes = f"{group}={kind} ({expected})" if kind else expected
        return f"{group}: this command takes {takes} only, not {chosen}"
    return _one_line(str(exc))


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


class RunFolder(Callback):
    """Hydra callback (conf/config.yaml, conf/drift_standalone.yaml...): before Hydra creates this run's folder
    (hydra.run.dir), gives it a folder no other run has, and notes which part of its path already existed, so that
    `remove_unstarted_run_folder` removes only what this run created. Single runs only: a sweep's job folders are
    the sweep's record.

    The default folder is named to the second (outputs/POLA/2026-12-07_05-55-45): a second run started within the
    same second would log into the same run.log, so each run claims its folder with an exclusive mkdir and the
    later ones get `_2`, `_3`... A folder chosen with `hydra.run.dir=` is used as it is, existing or not."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        _RUN_FOLDER.clear()
        run_dir = os.path.abspath(str(config.hydra.run.dir))
        if _chose_run_dir(config):
            created = None  # the topmost folder of run_dir's path that does not exist yet
            path = run_dir
            while not os.path.exists(path):
                created, path = path, os.path.dirname(path)
            before = set(os.listdir(run_dir)) if created is None else set()
        else:
            run_dir, created = claim_run_dir(run_dir)
            before = set()
            with read_write(config.hydra.run), open_dict(config.hydra.run):
                config.hydra.run.dir = run_dir  # what Hydra's run_job reads next: this run's folder
        _RUN_FOLDER.update(run_dir=run_dir, created=created, before=before)


def _chose_run_dir(config: DictConfig) -> bool:
    """Whether the command line set hydra.run.dir (then that folder is the user's choice, shared or not)."""
    overrides = OmegaConf.select(config, "hydra.overrides.hydra") or []
    return any(str(o).lstrip("+~").partition("=")[0] == "hydra.run.dir" for o in overrides)


def claim_run_dir(wanted: str) -> tuple[str, Optional[str]]:
    """Create `wanted`, or `wanted_2`, `wanted_3`... when another run already has it: (the folder created, the
    topmost folder of its path this call created: the folder itself when its parent was there). mkdir is atomic,
    so two processes never get the same one."""
    created = None
    path = os.path.dirname(wanted)
    while not os.path.exists(path):
        created, path = path, os.path.dirname(path)
    os.makedirs(os.path.dirname(wanted), exist_ok=True)
    candidate, number = wanted, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate, created or candidate
        except FileExistsError:
            number += 1
            candidate = f"{wanted}_{number}"


_RUN_FOLDER: dict = {}


def started_work() -> None:
    """Called by a command once its inputs are checked and its real work begins: from then on its run folder
    (run.log, .hydra) is the record of a run, and it stays whatever the outcome."""
    _RUN_FOLDER["started"] = True


def remove_unstarted_run_folder(code: int, keeps_run_folder: bool) -> None:
    """Remove what Hydra created for a run that never started (a config error, inputs that do not exist: nothing
    to read in it but the error already on the terminal) or, for a command without a run folder of its own
    (`keeps_run_folder=False`: the generator), always; never after an unexpected error (exit 1), whose traceback is
    in run.log. Only Hydra's own files are removed (.hydra/ and the log file) and only when this run created them."""
    if not _RUN_FOLDER or code == 1 or (keeps_run_folder and (code == 0 or _RUN_FOLDER.get("started"))):
        return
    run_dir = _RUN_FOLDER["run_dir"]
    try:
        if os.path.abspath(HydraConfig.get().runtime.output_dir) != run_dir:
            return  # not the folder we looked at before Hydra created it
        subdir = HydraConfig.get().output_subdir
    except ValueError:
        return
    log_path = _close_log_file()
    hydra_made = {name for name in (subdir, os.path.basename(log_path or "")) if name}
    if not os.path.isdir(run_dir):
        return
    new = set(os.listdir(run_dir)) - _RUN_FOLDER["before"]
    if not new <= hydra_made:
        return  # something else was written there: leave it all
    for name in new:
        path = os.path.join(run_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    created = _RUN_FOLDER["created"]
    if created is not None:  # the run folder (and any parent) did not exist before this run: remove the empty chain
        path = run_dir
        while True:
            try:
                os.rmdir(path)
            except OSError:
                break  # not empty: another run's folder lives there too
            if path == created:
                break
            path = os.path.dirname(path)


def _close_log_file() -> Optional[str]:
    """Detach and close the run's log file handler (its file is about to go); its path."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
            return handler.baseFilename
    return None


HELP_FLAGS = ("--help", "-h")
EXIT_CODES = "exit codes: 0 done, 1 unexpected (traceback in run.log), 2 config, 3 data, 4 drift gate, 5 cluster," \
    " 130 interrupted"


def hydra_cli(
    config_name: str,
    main: Callable[[DictConfig], int],
    register: Callable[[], None],
    schema: Optional[type] = None,
    keeps_run_folder: bool = True,
    usage: Optional[Callable[[], str]] = None,
) -> Callable[[], None]:
    """The command-line entry of a Hydra app over conf/<config_name>.yaml whose body is `main(cfg) -> exit code`.

    `schema`: the dataclass every key on the command line must belong to (`_preflight`). `keeps_run_folder=False`:
    the command leaves no run folder behind (the generator writes only its data), unless it failed unexpectedly.
    `usage`: the command's own `--help` text (Hydra's generic page, which lists the schemas' `base_*` entries as
    if they were choices, stays available as `--hydra-help`)."""
    started: List[bool] = []
    failed_jobs: List[int] = []

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base=None)
    def entry(cfg: DictConfig) -> None:

        started.append(True)
        last_words(log_file())  # a process that dies below Python still ends with one line
        with KonTerminal(log_file()):  # only kon_ray's lines on the terminal; Ray's, MLflow's, warnings: run.log
            code = main(cfg)
            if not in_multirun():  # a sweep's jobs share one Ray
                _stop_ray()
        if code and code != 130 and in_multirun():
            failed_jobs.append(code)  # one failed sweep job must not cancel the others
            return
        remove_unstarted_run_folder(code, keeps_run_folder)
        if code:
            sys.exit(code)

    def cli() -> None:
        if usage is not None and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            print(usage())
            sys.exit(0)
        register()
        _preflight(config_name, sys.argv[1:], schema)
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
