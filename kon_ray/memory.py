"""Peak memory and CPU-seconds of a whole run: this process, its children and every Ray process on the machine.

Ray's workers, raylet and object store are separate processes, so the driver's own RSS says little. A sampling
thread sums the proportional set size (PSS) over all of them and keeps the peak: PSS splits each shared page
(the object store is mapped by every worker) between the processes that map it, so the sum is the memory the run
really holds. Summing RSS instead counts a shared page once per process and overstated a 3.5M-row run by ~45%.
Where PSS is unreadable (not Linux, or another user's process) the process's RSS is used.

The same sampling pass reads each process's CPU time, so a benchmark gets CPU-seconds of every process (driver,
Ray's daemons, workers) beside wall time; a process that ends between two samples keeps its last reading, so the
figure undercounts by at most one interval of such a process.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, List, Tuple

import psutil

_RAY_NAMES = ("raylet", "gcs_server", "plasma", "dashboard", "log_monitor", "monitor.py", "runtime_env")


def _is_ray_process(proc: psutil.Process) -> bool:
    try:
        name = proc.name()
        if name.startswith("ray::") or any(n in name for n in _RAY_NAMES):
            return True
        cmdline = " ".join(proc.cmdline()[:3])
        return "ray/_private" in cmdline or "default_worker.py" in cmdline or "ray::" in cmdline
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _resident(proc: psutil.Process) -> int:
    try:
        return proc.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return proc.memory_info().rss


def _family() -> List[psutil.Process]:
    """This process, its descendants and every Ray process, each once."""
    me = psutil.Process(os.getpid())
    seen: Dict[int, psutil.Process] = {}
    for proc in [me, *me.children(recursive=True), *(p for p in psutil.process_iter() if _is_ray_process(p))]:
        seen.setdefault(proc.pid, proc)
    return list(seen.values())


class PeakMemory:
    """`with PeakMemory() as peak: ...; peak.bytes` — the largest summed PSS of this process, its descendants and
    every Ray process (each once) seen while the block ran;
    `peak.cpu_seconds()` — CPU time used so far by every process seen (user + system)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.bytes = 0
        self._cpu: Dict[Tuple[int, float], float] = {}  # (pid, start time) -> CPU-seconds at the last sample
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _measure(self) -> int:
        resident = 0
        for proc in _family():
            try:
                resident += _resident(proc)
                times = proc.cpu_times()
                with self._lock:
                    self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return resident

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.bytes = max(self.bytes, self._measure())
            self._stop.wait(self.interval)

    def reset(self) -> int:
        """Return the peak so far and start a new one (per-stage peaks)."""
        peak, self.bytes = max(self.bytes, self._measure()), 0
        return peak

    def cpu_seconds(self) -> float:
        """CPU-seconds of every process seen since the block began, read now (ended processes: their last sample).
        Processes already running when it began count from their start: take differences between two calls."""
        self._measure()
        with self._lock:
            return sum(self._cpu.values())

    def __enter__(self) -> "PeakMemory":
        self._measure()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, self._measure())

    @property
    def gib(self) -> float:
        return self.bytes / 1024**3
