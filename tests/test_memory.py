"""kon_ray.memory: the run's memory and CPU meter counts work done in child processes, not only its own."""

import subprocess
import sys
import time

from kon_ray.memory import PeakMemory

BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(0.5)"


def test_a_child_process_cpu_time_and_memory_are_counted():
    with PeakMemory(interval=0.05) as meter:
        before = meter.cpu_seconds()
        child = subprocess.Popen([sys.executable, "-c", BURN])
        time.sleep(0.2)
        assert child.wait(timeout=30) == 0
        used = meter.cpu_seconds() - before
    # the child spent 0.6 CPU-s spinning (its own clock) plus its interpreter start; it slept its last 0.5 s,
    # so the sampler read it at least once after the spin ended. The upper bound is loose: this process's own
    # sampling (every 0.05 s, all processes) counts too, more on a loaded machine
    assert 0.6 <= used < 0.6 + 6.0
    assert meter.bytes > 10 * 1024**2  # at least this Python process's own resident set
