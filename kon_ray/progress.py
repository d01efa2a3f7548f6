"""Progress you can watch: what a stage that runs for more than a few seconds shows while it works.

Two kinds of work report here:
- a pass over work units (`kon_ray.execution.map_units`, through `watch_units`): units done of total, rows done,
  rows/s, elapsed and an estimate of what is left (the rows still to do at the rate so far);
- training (`RoundProgress`, fed per-round events from the fits, `RoundNotifier` -> `RoundSink`): per population the
  boosting round of the maximum and the best validation mlogloss so far, and an estimate from the rows x rounds left
  (an upper bound: early stopping may end a fit sooner).

Where it goes: on a terminal one live line per pass, redrawn in place at most every LIVE_INTERVAL_S once the pass has
run LIVE_DELAY_S (a shorter pass shows nothing) and cleared when it ends or when a log line is printed; when the
output is not a terminal (CI, a Ray Job's log, CloudWatch) a plain `kon_ray.progress` log line at most every
LOG_INTERVAL_S (environment `KON_PROGRESS_LOG_INTERVAL_S` overrides it), the first one after that long, so a log
gets no progress lines for passes shorter than that. The reporters are fed events and read an injectable clock;
what they print goes to an `Output`, so tests drive them with a fake clock and a list.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, TypeVar

from kon_ray import terminal

log = logging.getLogger(__name__)

LIVE_DELAY_S = 3.0  # a pass shorter than this shows no live line
LIVE_INTERVAL_S = 1.0  # a live line is redrawn at most this often
LOG_INTERVAL_S = 30.0  # off a terminal: a plain line at most this often
NOTIFY_INTERVAL_S = 1.0  # a fit sends its round at most this often (and always its first and last)

Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """7 -> '0:07', 725 -> '12:05', 3725 -> '1:02:05'."""
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(done: float, total: float, seconds: float) -> Optional[float]:
    """Seconds left for `total` units of work when `done` took `seconds` at a steady rate; None before any is done."""
    if done <= 0 or seconds <= 0:
        return None
    return max(0.0, seconds * (total - done) / done)


def units_line(label: str, done_units: int, total_units: int, done_rows: int, total_rows: int,
               elapsed: float) -> str:
    """'features transform: 3/8 units, 120,000/300,000 rows, 40,000 rows/s, 0:03 elapsed, ~0:05 left'."""
    rate = done_rows / elapsed if elapsed > 0 else 0.0
    left = eta_seconds(done_rows, total_rows, elapsed) if total_rows else eta_seconds(done_units, total_units, elapsed)
    estimate = f"~{duration(left)} left" if left is not None else "estimating"
    return (f"{label}: {done_units}/{total_units} units, {done_rows:,}/{total_rows:,} rows, {rate:,.0f} rows/s, "
            f"{duration(elapsed)} elapsed, {estimate}")


@dataclass
class RoundState:
    """What the driver knows of one population's fit."""

    rounds: int = 0  # rounds trained so far
    max_rounds: int = 0
    best_score: Optional[float] = None  # best validation mlogloss so far
    best_round: Optional[int] = None  # 1-based round of the best score
    done: bool = False


def round_part(population: str, state: RoundState) -> str:
    """'domestic round 34/200 (best validation mlogloss 0.4123 at 30)', '... done after 80 rounds (best ...)'."""
    best = ("" if state.best_score is None
            else f" (best validation mlogloss {state.best_score:.4f} at round {state.best_round})")
    if state.done:
        return f"{population} done after {state.rounds} rounds{best}"
    if state.rounds == 0:
        return f"{population} waiting"
    return f"{population} round {state.rounds}/{state.max_rounds}{best}"


class Output(Protocol):
    def live(self, text: str) -> None: ...  # replace the live line with `text`

    def clear(self) -> None: ...  # remove the live line

    def line(self, text: str) -> None: ...  # one plain log line


class Reporter:
    """When to show a line: on a terminal (`tty`) a live line at most every `live_interval` once `delay` has passed;
    elsewhere a plain line at most every `log_interval`, the first after `log_interval`. `render(elapsed)` makes
    the text only when one is due."""

    def __init__(self, output: Output, tty: bool, clock: Clock = time.monotonic, *, delay: Optional[float] = None,
                 live_interval: float = LIVE_INTERVAL_S, log_interval: Optional[float] = None) -> None:
        self.output, self.tty, self.clock = output, tty, clock
        # the module's LIVE_DELAY_S as it is now, not when this was defined (a caller may set it: tests, a script)
        self.delay = delay if delay is not None else LIVE_DELAY_S
        self.live_interval = live_interval
        self.log_interval = log_interval if log_interval is not None else log_interval_s()
        self.start = clock()
        self._last: Optional[float] = None
        self._shown = False
        self._lock = threading.RLock()  # updates may come from a poller thread and the caller's

    def tick(self, render: Callable[[float], str]) -> None:
        with self._lock:
            now = self.clock()
            elapsed = now - self.start
            if self.tty:
                if elapsed < self.delay or (self._last is not None and now - self._last < self.live_interval):
                    return
                self.output.live(render(elapsed))
                self._shown = True
            else:
                if now - (self._last if self._last is not None else self.start) < self.log_interval:
                    return
                self.output.line(render(elapsed))
            self._last = now

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self.output.clear()
                self._shown = False


class UnitProgress(Reporter):
    """A pass over work units: `unit_done(rows)` after each."""

    def __init__(self, label: str, total_units: int, total_rows: int, output: Output, tty: bool,
                 clock: Clock = time.monotonic, **intervals: float) -> None:
        super().__init__(output, tty, clock, **intervals)
        self.label, self.total_units, self.total_rows = label, total_units, total_rows
        self.done_units = self.done_rows = 0

    def unit_done(self, rows: int) -> None:
        self.done_units += 1
        self.done_rows += rows
        self.tick(self.render)

    def render(self, elapsed: float) -> str:
        return units_line(self.label, self.done_units, self.total_units, self.done_rows, self.total_rows, elapsed)


class RoundProgress(Reporter):
    """Training: `update(event)` with a `RoundNotifier` event; the estimate weighs each population's rounds by its
    rows (`weights`), a round of a 4x larger population costing about 4x, and measures the rate from the first
    round reported (reading the data and building the matrices come before it)."""

    def __init__(self, label: str, weights: Dict[str, float], max_rounds: int, output: Output, tty: bool,
                 clock: Clock = time.monotonic, **intervals: float) -> None:
        super().__init__(output, tty, clock, **intervals)
        self.label, self.weights = label, dict(weights)
        self.states: Dict[str, RoundState] = {population: RoundState(max_rounds=max_rounds) for population in weights}
        self._first: Optional[tuple[float, float]] = None  # (time, work done) at the first round reported

    def update(self, event: Dict[str, Any]) -> None:
        with self._lock:
            population = str(event["population"])
            state = self.states.setdefault(population, RoundState())
            if state.done and not event.get("done"):
                return  # a late event of a fit already reported finished
            self.weights.setdefault(population, 1.0)
            state.rounds, state.max_rounds = int(event["round"]), int(event["max_rounds"])
            state.best_score, state.best_round = event.get("best_score"), event.get("best_round")
            state.done = bool(event.get("done"))
            if self._first is None:
                self._first = (self.clock(), self.work()[0])
            self.tick(self.render)

    def work(self) -> tuple[float, float]:
        """(rows x rounds done, rows x rounds in all): a finished fit's total is what it trained."""
        done = total = 0.0
        for population, state in self.states.items():
            weight = self.weights.get(population, 1.0)
            done += weight * state.rounds
            total += weight * (state.rounds if state.done else max(state.max_rounds, state.rounds))
        return done, total

    def left(self) -> Optional[float]:
        if self._first is None:
            return None
        done, total = self.work()
        started, done_then = self._first
        return eta_seconds(done - done_then, total - done_then, self.clock() - started)

    def render(self, elapsed: float) -> str:
        parts = ", ".join(round_part(population, state) for population, state in self.states.items())
        left = self.left()
        estimate = f"~{duration(left)} left at most" if left is not None else "estimating"
        return f"{self.label}: {parts}; {duration(elapsed)} elapsed, {estimate}"


class RoundNotifier:
    """In a fit: `notify(rounds, best_score, best_iteration, done=False)` after each round sends an event with the
    population's round and best validation score to `send`, at most every `interval` (the first and the last
    always), so a fast fit does not flood the driver."""

    def __init__(self, send: Callable[[Dict[str, Any]], None], population: str, max_rounds: int,
                 interval: float = NOTIFY_INTERVAL_S, clock: Clock = time.monotonic) -> None:
        self.send, self.population, self.max_rounds = send, population, max_rounds
        self.interval, self.clock = interval, clock
        self._last: Optional[float] = None

    def __call__(self, rounds: int, best_score: float, best_iteration: int, done: bool = False) -> None:
        now = self.clock()
        if not done and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        finite = best_score is not None and math.isfinite(best_score)
        self.send({"population": self.population, "round": rounds, "max_rounds": self.max_rounds,
                   "best_score": float(best_score) if finite else None,
                   "best_round": best_iteration + 1 if finite else None, "done": done})


class RoundSink:
    """Where fits send their events (a Ray actor of this class when they run in Ray tasks or workers): the latest
    event per population, taken by the driver's poller."""

    def __init__(self) -> None:
        self._events: Dict[str, Dict[str, Any]] = {}

    def update(self, event: Dict[str, Any]) -> None:
        self._events[str(event["population"])] = event

    def take(self) -> List[Dict[str, Any]]:
        events, self._events = list(self._events.values()), {}
        return events


class Poller:
    """`with Poller(take, progress):` feeds `progress.update` with the events `take()` returns, every `interval` s,
    in a daemon thread; once more at the end. A failing `take` (the actor gone) ends the polling, never the run."""

    def __init__(self, take: Callable[[], List[Dict[str, Any]]], progress: RoundProgress,
                 interval: float = LIVE_INTERVAL_S) -> None:
        self.take, self.progress, self.interval = take, progress, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kon-progress", daemon=True)

    def _poll(self) -> bool:
        try:
            events = self.take()
        except Exception as exc:  # noqa: BLE001 - progress is never worth failing a run
            log.debug("progress polling stopped: %s", exc)
            return False
        for event in events:
            self.progress.update(event)
        self.progress.tick(self.progress.render)  # elapsed moves on between rounds too
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._poll():
                return

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        if exc[0] is None:
            self._poll()  # what arrived since the last poll
        self.progress.close()


# --- where lines go ----------------------------------------------------------------------------------------------


def log_interval_s() -> float:
    """LOG_INTERVAL_S, or the environment's KON_PROGRESS_LOG_INTERVAL_S."""
    try:
        return float(os.environ.get("KON_PROGRESS_LOG_INTERVAL_S", LOG_INTERVAL_S))
    except ValueError:
        return LOG_INTERVAL_S


class TerminalOutput:
    """The live line on the console stream kon_ray's log lines reach (`kon_ray.terminal.console_stream`), cut to
    the terminal's width (a wrapped line could not be redrawn in place); plain lines through the `kon_ray.progress`
    logger, so they reach the console and the run's log file like every other line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def live(self, text: str) -> None:

        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        with self._lock:
            self.stream.write("\r" + text[:width] + "\x1b[K")
            self.stream.flush()
        terminal.set_live_line(self.clear)

    def clear(self) -> None:

        terminal.set_live_line(None)
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def line(self, text: str) -> None:
        log.info("%s", text)


def terminal_output() -> tuple[Output, bool]:
    """(the output, whether it is a terminal) for a reporter created now."""

    stream = terminal.console_stream()
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    return TerminalOutput(stream), tty


def units_label(fn: Callable[..., Any], name: Optional[str]) -> str:
    """'features fit_block': the stage package of `fn` and the pass's name."""
    func = getattr(fn, "func", fn)  # functools.partial
    module = str(getattr(func, "__module__", "") or "").split(".")
    package = module[1] if len(module) > 2 and module[0] == "kon_ray" else ""
    pass_name = (name or str(getattr(func, "__name__", "pass"))).strip("_")
    return pass_name if not package or pass_name.startswith(package) else f"{package} {pass_name}"


T = TypeVar("T")


def watch_units(map_units: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
    """Decorates `kon_ray.execution.map_units(fn, units, **options)`, whose results come one per unit in unit
    order: a `UnitProgress` on the terminal for the pass."""

    @functools.wraps(map_units)
    def watched(fn: Callable[..., Any], units: Sequence[Any], **options: Any) -> Iterator[T]:
        units = list(units)
        output, tty = terminal_output()
        progress = UnitProgress(units_label(fn, options.get("name")), len(units), sum(u.rows for u in units),
                                output, tty)
        try:
            for i, result in enumerate(map_units(fn, units, **options)):
                progress.unit_done(units[i].rows)
                yield result
        finally:
            progress.close()

    return watched
