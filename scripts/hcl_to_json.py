#!/usr/bin/env python3
"""Dump the parsed HCL of Terraform files as JSON.

Usage: hcl_to_json.py PATH [PATH ...]

Each PATH is a .tf/.tfvars file or a directory searched recursively (the
.terraform/ cache is skipped). Prints one JSON object mapping each file's
path, relative to the current directory, to its parsed content.

Runs in the tools virtualenv (.venv-tools/bin/python): the `hcl2` module there
is the python-hcl2 API as shipped by bc-python-hcl2, the fork checkov itself
depends on (see requirements-tools.in for why python-hcl2 is not installed
separately). Blocks come out as lists of dicts, expressions as "${...}" strings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hcl2

SUFFIXES = (".tf", ".tfvars")


def iter_files(path: Path):
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".terraform")
        for name in sorted(files):
            if name.endswith(SUFFIXES):
                yield Path(root) / name


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out: dict[str, object] = {}
    errors = 0
    for arg in argv:
        path = Path(arg)
        if not path.exists():
            print(f"hcl_to_json: no such file or directory: {arg}", file=sys.stderr)
            errors += 1
            continue
        for f in iter_files(path):
            try:
                with open(f, encoding="utf-8") as fh:
                    out[os.path.relpath(f)] = hcl2.load(fh)
            except Exception as exc:  # noqa: BLE001 - report every broken file
                print(f"hcl_to_json: cannot parse {f}: {exc}", file=sys.stderr)
                errors += 1
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
