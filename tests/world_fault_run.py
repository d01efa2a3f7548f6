"""`python -m tests.world_fault_run OUTPUT_DIR [overrides]`: the pipeline's body as `kon_ray.run` runs it (the same
`guarded` edge: one line and the exit code), in this process without Ray and without MLflow, for the storage-fault
tests (tests/test_world_faults.py): starting a local Ray per run would cost more than the stages they need.

With KON_TEST_GO=PATH in the environment the run waits (bounded) until PATH exists before it starts, so that two
runs started by a test begin together on that event.
"""

from __future__ import annotations

import logging
import os
import sys
import time


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from omegaconf import open_dict

    from kon_ray.cli import guarded
    from kon_ray.config import load_config, to_plain
    from kon_ray.run import run
    from tests.conftest import compose_config

    output_dir, overrides = argv[0], argv[1:]
    cfg = compose_config(["+dataset=POLA", "tracking=off", *overrides])
    with open_dict(cfg):
        cfg.output_dir = output_dir
    go = os.environ.get("KON_TEST_GO")
    if go:
        deadline = time.monotonic() + 120
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)

    def body() -> int:
        config = load_config(cfg)
        run(config, to_plain(cfg))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
