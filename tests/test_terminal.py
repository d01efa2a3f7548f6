"""kon_ray.terminal: while a command runs the terminal shows kon_ray's lines and its result only; everything else
(other loggers, warnings, raw writes to the file descriptors as C++ code makes them) lands in the run's log file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, warnings
    from kon_ray.terminal import KonTerminal, result_stream

    log_file = sys.argv[1]
    console = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=logging.INFO, handlers=[console, logging.FileHandler(log_file)],
                        format="%(name)s: %(message)s")
    with KonTerminal(log_file):
        logging.getLogger("kon_ray").info("kon line")
        logging.getLogger("kon_ray.train.stage").info("kon child line")
        logging.getLogger("ray.data").warning("ray data line")
        late = logging.getLogger("late_library")  # a library that binds its handler to sys.stderr only now
        late.addHandler(logging.StreamHandler(sys.stderr))
        late.propagate = False
        late.warning("late library line")
        warnings.warn("a deprecation", DeprecationWarning)
        os.write(2, b"core_worker.cc: raw C++ line\\n")
        os.write(1, b"raw stdout line\\n")
        print("stray print")
        print("the result", file=result_stream())
    logging.getLogger("kon_ray").info("after the command")
    print("after, on stdout")
    """
)


def test_only_kon_rays_lines_reach_the_terminal_and_the_rest_reaches_the_log(tmp_path):
    log_file = tmp_path / "run.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["kon_ray: kon line", "kon_ray.train.stage: kon child line",
                                        "kon_ray: after the command"]
    assert done.stdout.splitlines() == ["the result", "after, on stdout"]
    logged = log_file.read_text()
    for line in ("kon line", "ray.data: ray data line", "late library line", "a deprecation",
                 "core_worker.cc: raw C++ line", "raw stdout line", "stray print"):
        assert line in logged, line
