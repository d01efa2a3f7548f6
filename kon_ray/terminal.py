"""The terminal is kon_ray's: while a command runs, only kon_ray's own log lines reach the user's terminal.

Everything else a run produces still goes somewhere a person can find it, the run's log file (`run.log`):
- third-party loggers (Ray, Ray Data, Ray Train, MLflow, alembic, ...) and Python warnings (deprecations, MLflow's
  integer-column hints): the console handler passes only the `kon_ray` loggers; the file handler keeps them all;
- text written to the process's stderr or stdout by C++ or by libraries (Ray's core worker and raylet messages,
  Ray's own log handlers, progress bars, stray prints): file descriptors 1 and 2 point at `run.log` while the
  command runs; kon_ray's console handler, and the command's result (`result_stream()`), keep the real terminal.

Ray's workers print to their own log files in Ray's session folder (`log_to_driver=False`), which the run names.
A progress line (`kon_ray.progress`) lives on the same console stream as kon_ray's log lines (`console_stream`) and
is cleared before each of them (`set_live_line`), so the two never share a line.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import IO, Callable, List, Literal, Optional

KON_LOGGER = "kon_ray"
_active: List["KonTerminal"] = []
_live_clear: Optional[Callable[[], None]] = None  # clears the progress line on the console, while one is shown


def set_live_line(clear: Optional[Callable[[], None]]) -> None:
    """A progress line is on the console (`clear` removes it) or none is (None)."""
    global _live_clear
    _live_clear = clear


def console_stream() -> IO[str]:
    """The stream kon_ray's log lines reach the user on: the console handler's (the terminal, also while
    `KonTerminal` sends file descriptors 1 and 2 into the run's log), else stderr."""
    for terminal in reversed(_active):
        for handler in terminal._filtered:
            return handler.stream
    for root_handler in logging.getLogger().handlers:
        if isinstance(root_handler, logging.StreamHandler) and not isinstance(root_handler, logging.FileHandler):
            return root_handler.stream
    return sys.stderr


def result_stream() -> IO[str]:
    """Where a command prints its result (a drift summary, a remote job's log): the terminal's stdout, also while
    `KonTerminal` sends everything else written to stdout into the run's log file."""
    for terminal in reversed(_active):
        if terminal.stdout is not None:
            return terminal.stdout
    return sys.stdout


class OnlyKonRay(logging.Filter):
    """Lets through the records of kon_ray's loggers (`kon_ray` and `kon_ray.*`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        passes = record.name == KON_LOGGER or record.name.startswith(KON_LOGGER + ".")
        if passes and _live_clear is not None:
            _live_clear()  # the record is about to be printed on the console: take the progress line off first
        return passes


class KonTerminal:
    """`with KonTerminal(log_file): ...`: the terminal shows kon_ray's lines only, the rest lands in `log_file`.

    Restores everything on exit (a multirun runs one job after another in one process)."""

    def __init__(self, log_file: Optional[str]) -> None:
        self.log_file = log_file
        self._saved: List[tuple] = []
        self._streams: List[IO[str]] = []
        self._filtered: List[logging.StreamHandler[IO[str]]] = []
        self._filter = OnlyKonRay()
        self._captured = False
        self.stdout: Optional[IO[str]] = None

    def __enter__(self) -> "KonTerminal":
        root = logging.getLogger()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(self._filter)
                self._filtered.append(handler)
        logging.captureWarnings(True)  # warnings -> the "py.warnings" logger -> run.log only
        self._captured = True
        warnings.simplefilter("default")  # each distinct warning once, in the log file
        if self.log_file:
            self._redirect_descriptors()
        _active.append(self)
        return self

    def _redirect_descriptors(self) -> None:
        assert self.log_file is not None
        for fd, name in ((1, "stdout"), (2, "stderr")):
            stream = getattr(sys, name)
            try:
                if stream.fileno() != fd:
                    continue  # already replaced (pytest's capture, a notebook): leave it alone
            except (AttributeError, OSError, ValueError):
                continue
            stream.flush()
            saved = os.dup(fd)
            terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                                 errors="backslashreplace")
            target = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(target, fd)
            os.close(target)
            # sys.stdout / sys.stderr stay as they are (now into the log file): handlers that libraries create
            # later bind to them. Only kon_ray's console handler and the command's result get the terminal.
            for handler in self._filtered:
                if getattr(handler, "stream", None) is stream:
                    handler.setStream(terminal)
            if fd == 1:
                self.stdout = terminal
            self._saved.append((fd, name, saved, stream, terminal))
            self._streams.append(terminal)

    def __exit__(self, *exc: object) -> Literal[False]:
        if self in _active:
            _active.remove(self)
        for fd, _name, saved, original, terminal in reversed(self._saved):
            terminal.flush()
            original.flush()
            os.dup2(saved, fd)
            os.close(saved)
            for handler in self._filtered:
                if getattr(handler, "stream", None) is terminal:
                    handler.setStream(original)
        for stream in self._streams:
            stream.close()
        for handler in self._filtered:
            handler.removeFilter(self._filter)
        if self._captured:
            logging.captureWarnings(False)
        self._saved, self._streams, self._filtered, self.stdout = [], [], [], None
        return False
