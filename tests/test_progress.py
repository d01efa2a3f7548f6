"""kon_ray.progress: the lines a pass over work units and a training run show, driven by a fake clock (the 30 s
throttle off a terminal, the live line's delay and redraw interval, the ETA arithmetic), and one real check: a
process whose console is a terminal (a pty) shows the live line of an execution-layer pass, and one whose console is
a pipe logs a plain progress line that also lands in the run's log file."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Tuple

import pytest

from kon_ray import progress
from kon_ray.progress import (
    RoundNotifier,
    RoundProgress,
    RoundSink,
    UnitProgress,
    duration,
    eta_seconds,
    units_label,
    units_line,
)

REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """An Output that records what a reporter shows: ("live", text), ("clear", ""), ("line", text)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, str]] = []

    def live(self, text: str) -> None:
        self.calls.append(("live", text))

    def clear(self) -> None:
        self.calls.append(("clear", ""))

    def line(self, text: str) -> None:
        self.calls.append(("line", text))


def test_duration_and_eta_arithmetic():
    assert [duration(s) for s in (0, 7, 59.6, 725, 3725)] == ["0:00", "0:07", "1:00", "12:05", "1:02:05"]
    assert eta_seconds(0, 100, 5.0) is None  # nothing done yet: no estimate
    assert eta_seconds(25, 100, 10.0) == 30.0  # 25 in 10 s -> 75 more take 30 s
    assert eta_seconds(100, 100, 10.0) == 0.0


def test_units_line_reads_done_rate_elapsed_and_left():
    assert units_line("features transform", 3, 8, 120_000, 300_000, 4.0) == (
        "features transform: 3/8 units, 120,000/300,000 rows, 30,000 rows/s, 0:04 elapsed, ~0:06 left")
    assert units_line("drift fit", 0, 4, 0, 1_000, 0.5).endswith("0:00 elapsed, estimating")


def test_off_a_terminal_a_plain_line_at_most_every_30_seconds():
    clock, out = FakeClock(), Recorder()
    reporter = UnitProgress("features transform", 100, 1_000_000, out, tty=False, clock=clock, log_interval=30.0)
    for _ in range(100):  # a unit of 10,000 rows every 1.5 s: 150 s in all
        clock.now += 1.5
        reporter.unit_done(10_000)
    reporter.close()
    lines = [text for kind, text in out.calls]
    assert [kind for kind, _ in out.calls] == ["line"] * 5  # at 30, 60, 90, 120 and 150 s; no clear off a terminal
    assert lines[0] == ("features transform: 20/100 units, 200,000/1,000,000 rows, 6,667 rows/s, 0:30 elapsed, "
                        "~2:00 left")
    assert lines[-1].startswith("features transform: 100/100 units") and lines[-1].endswith("2:30 elapsed, ~0:00 left")


def test_on_a_terminal_a_live_line_after_the_delay_redrawn_at_most_every_second_then_cleared():
    clock, out = FakeClock(), Recorder()
    reporter = UnitProgress("drift counts", 40, 40_000, out, tty=True, clock=clock, delay=3.0, live_interval=1.0)
    for _ in range(40):  # a unit every 0.25 s: 10 s in all
        clock.now += 0.25
        reporter.unit_done(1_000)
    reporter.close()
    kinds = [kind for kind, _ in out.calls]
    # nothing in the first 3 s, then one redraw per second (3, 4, ..., 10 s), and the line is taken off at the end
    assert kinds == ["live"] * 8 + ["clear"]
    assert out.calls[0][1].startswith("drift counts: 12/40 units, 12,000/40,000 rows, 4,000 rows/s, 0:03 elapsed")


def test_a_short_pass_shows_nothing():
    clock, out = FakeClock(), Recorder()
    reporter = UnitProgress("segment prepare_unit", 2, 20, out, tty=True, clock=clock)
    clock.now += 1.0
    reporter.unit_done(10)
    reporter.unit_done(10)
    reporter.close()
    assert out.calls == []


def test_training_shows_rounds_best_score_and_a_row_weighted_estimate():
    clock, out = FakeClock(), Recorder()
    weights = {"domestic": 400_000.0, "industrial": 100_000.0}
    reporter = RoundProgress("train", weights, 100, out, tty=True, clock=clock, delay=0.0, live_interval=0.0)
    clock.now += 20.0  # reading and the matrices: before the first round, not in the rate
    reporter.update({"population": "domestic", "round": 1, "max_rounds": 100, "best_score": 1.2, "best_round": 1,
                     "done": False})
    clock.now += 10.0
    reporter.update({"population": "domestic", "round": 11, "max_rounds": 100, "best_score": 0.81234,
                     "best_round": 9, "done": False})
    # work: domestic 400k x 100 + industrial 100k x 100 = 50M row-rounds; 10 rounds x 400k = 4M done in 10 s after
    # the first; 50M - 4.4M (11 rounds) left at 0.4M per s = 114 s
    assert out.calls[-1] == ("live", "train: domestic round 11/100 (best validation mlogloss 0.8123 at round 9), "
                                     "industrial waiting; 0:30 elapsed, ~1:54 left at most")
    reporter.update({"population": "domestic", "round": 40, "max_rounds": 100, "best_score": 0.5, "best_round": 30,
                     "done": True})  # stopped early at 40: its 60 rounds left drop out of the estimate
    # done 16M (15.6M since the first round, in 10 s), in all 400k x 40 + 100k x 100 = 26M: 10M left, 6.4 s
    assert out.calls[-1][1] == ("train: domestic done after 40 rounds (best validation mlogloss 0.5000 at round 30), "
                                "industrial waiting; 0:30 elapsed, ~0:06 left at most")


def test_round_notifier_sends_the_first_round_then_at_most_every_interval_and_always_the_last():
    clock, sent = FakeClock(), []
    notify = RoundNotifier(sent.append, "industrial", 50, interval=1.0, clock=clock)
    for rounds in range(1, 11):  # a round every 0.3 s
        notify(rounds, 1.0 / rounds, rounds - 1)
        clock.now += 0.3
    notify(10, 0.1, 9, done=True)
    assert [event["round"] for event in sent] == [1, 5, 9, 10]
    assert sent[0] == {"population": "industrial", "round": 1, "max_rounds": 50, "best_score": 1.0, "best_round": 1,
                       "done": False}
    assert sent[-1]["done"] is True
    notify_inf = RoundNotifier(sent.append, "domestic", 5)
    notify_inf(0, float("inf"), -1)  # no round scored yet: no best
    assert sent[-1]["best_score"] is None and sent[-1]["best_round"] is None


def test_round_sink_keeps_the_latest_event_per_population_until_taken():
    sink = RoundSink()
    sink.update({"population": "domestic", "round": 1})
    sink.update({"population": "domestic", "round": 2})
    sink.update({"population": "industrial", "round": 7})
    assert sink.take() == [{"population": "domestic", "round": 2}, {"population": "industrial", "round": 7}]
    assert sink.take() == []


def test_units_label_names_the_stage_package_and_the_pass():
    def _count_unit(table, unit):
        return table

    _count_unit.__module__ = "kon_ray.train.stage"  # as if defined there (importing it would start Ray's imports)
    assert units_label(_count_unit, "train_class_counts") == "train_class_counts"
    assert units_label(_count_unit, None) == "train count_unit"
    assert units_label(len, None) == "len"


SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    import pyarrow as pa, pyarrow.parquet as pq
    from kon_ray import execution, progress
    from kon_ray.terminal import KonTerminal

    folder, log_file = sys.argv[1], sys.argv[2]
    progress.LIVE_DELAY_S = 0.3
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr),
                        logging.FileHandler(log_file)], format="%(name)s: %(message)s")
    pq.write_table(pa.table({"x": list(range(64_000))}), folder + "/part.parquet", row_group_size=4_000)

    def slow(table, unit):
        time.sleep(0.15)
        return table.num_rows

    with KonTerminal(log_file):
        units = execution.plan([folder + "/part.parquet"], ["x"], workers=8, min_rows=1)
        total = sum(execution.map_units(slow, units, columns=["x"], name="slow_pass"))
        logging.getLogger("kon_ray.test").info("rows %d in %d units", total, len(units))
    """
)


def _run(tmp_path: Path, console: str) -> Tuple[str, str]:
    """SCRIPT with its stderr on a pty (a terminal) or a pipe; (what the console got, the log file)."""
    log_file = tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KON_PROGRESS_LOG_INTERVAL_S": "0.5"}
    args = [sys.executable, "-c", SCRIPT, str(tmp_path), str(log_file)]
    if console == "pipe":
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr, log_file.read_text()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail("no output from the pty for 60 s")
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(60) == 0
    os.close(leader)
    return b"".join(chunks).decode(), log_file.read_text()


def test_a_pass_on_a_terminal_shows_a_live_line_that_stays_out_of_the_log(tmp_path):
    shown, logged = _run(tmp_path, "pty")
    # 16 units of 4,000 rows at 0.15 s each: the live line appears after 0.3 s, is redrawn in place and cleared
    live = [part for part in shown.split("\r") if part.startswith("slow_pass: ")]
    assert live and " units, " in live[0] and "/64,000 rows, " in live[0] and " rows/s, " in live[0]
    assert "\r\x1b[Kkon_ray.test: rows 64000 in 16 units" in shown.replace("\r\n", "\n")  # cleared before a log line
    assert "slow_pass" not in logged and "kon_ray.test: rows 64000 in 16 units" in logged


def test_a_pass_off_a_terminal_logs_plain_progress_lines(tmp_path):
    shown, logged = _run(tmp_path, "pipe")
    lines = [line for line in shown.splitlines() if line.startswith("kon_ray.progress: slow_pass: ")]
    assert lines and "\r" not in shown and "\x1b" not in shown
    assert lines[0].split(": ", 1)[1].startswith("slow_pass: ") and " rows/s, " in lines[0] and " left" in lines[0]
    assert lines[0] in logged
    assert shown.splitlines()[-1] == "kon_ray.test: rows 64000 in 16 units"


def test_terminal_output_is_a_tty_only_on_a_terminal():
    output, tty = progress.terminal_output()
    assert tty is False  # pytest captures the console
    assert isinstance(output, progress.TerminalOutput)
