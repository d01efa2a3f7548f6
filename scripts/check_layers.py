"""The layering check (`make check`): kon_ray's own imports point only down the layers drawn in the README.

Reads every module of the package with `ast` (nothing is imported or run) and fails when
- an import of a unit (a top-level module or a sub-package of kon_ray) names a unit of a higher layer, or of another
  unit on the same layer (a stage package importing another stage);
- the units, or the files, import each other in a loop, deferred imports included;
- more own-module imports are deferred into functions than DEFERRED_BUDGET, or one has no comment. A deferred import
  is kept only to leave a heavy library (Ray, MLflow, xgboost, SciPy) off a fast path (a command's --help and
  config errors, the sweep's planning) or where a test replaces the name it imports; the line above says which.

`python scripts/check_layers.py --report` prints the graph's measures instead of failing.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kon_ray"

# Bottom first; a unit imports only units listed before it (lower layers, or lower in its own layer's order). A unit
# is a top-level module or a sub-package of kon_ray, except that each package's `config.py` (its config schema)
# belongs to the base, and the command modules (COMMANDS, every `__main__.py`) to the command layer: nothing
# imports a command.
LAYERS: List[Tuple[str, List[str]]] = [
    ("base", ["errors", "hashing", "net", "secrets", "memory", "terminal", "storage", "stages", "manifest",
              "run_index", "cluster.config", "drift.config", "features.config", "segment.config", "synth.config",
              "sweep.config", "tracking.config", "train.config", "performance.config", "config"]),
    ("execution", ["progress", "execution", "context"]),
    ("stages", ["synth", "ingest", "features", "segment", "train", "model", "performance", "drift", "infer"]),
    ("pipeline and tracking", ["tracking", "pipeline", "cluster"]),
    ("commands", ["cli", "run", "sweep", "commands"]),
]
COMMANDS = {"kon_ray.drift.history", "kon_ray.tracking.log", "kon_ray.synth.command"}

DEFERRED_BUDGET = 15


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    if module in COMMANDS or parts[-1] == "__main__":
        return "commands"
    if len(parts) == 3 and parts[2] == "config":
        return f"{parts[1]}.config"
    return parts[1] if len(parts) > 1 else parts[0]


def own_imports(path: Path, modules: Set[str], inert: Optional[Set[str]] = None) -> Iterator[Tuple[str, int, bool]]:
    """(imported module, line, deferred) for every import of a kon_ray module in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        deferred = id(node) not in top_level and not _in_type_checking(tree, node)
        seen: Set[str] = set()
        for name in names:
            if name == "kon_ray" or name.startswith("kon_ray."):
                while name not in modules and "." in name:
                    name = name.rpartition(".")[0]
                # importing kon_ray.a.b runs kon_ray/a/__init__.py first
                parents = [".".join(name.split(".")[:end]) for end in range(2, name.count(".") + 1)]
                # an __init__ that imports nothing adds no edge
                parents = [parent for parent in parents if parent not in (inert or ())]
                for target in [*parents, name]:
                    if target not in seen:
                        seen.add(target)
                        yield target, node.lineno, deferred


def _in_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def _says_why(path: Path, line: int) -> bool:
    """A comment on the import's line, or on the line above its group of imports."""
    lines = path.read_text().splitlines()
    index = line - 1
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("from ", "import ")):
        index -= 1
    return index > 0 and lines[index - 1].strip().startswith("#")


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one node (Tarjan's)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(argv: List[str]) -> int:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    inert = {module_name(path) for path in paths
             if path.name == "__init__.py" and not any(own_imports(path, modules))}
    files: Dict[str, Set[str]] = defaultdict(set)
    units: Dict[str, Set[str]] = defaultdict(set)
    problems: List[str] = []
    deferred: Set[str] = set()  # one per import statement
    statements: Set[str] = set()
    order = [unit for _, members in LAYERS for unit in members]
    rank = {unit: index for index, unit in enumerate(order)}
    layer_of = {unit: depth for depth, (_, members) in enumerate(LAYERS) for unit in members}
    for path in paths:
        me = module_name(path)
        for target, line, is_deferred in own_imports(path, modules, inert):
            where = f"{path.relative_to(ROOT)}:{line}"
            statements.add(where)
            if is_deferred:
                deferred.add(where)
                if not _says_why(path, line):
                    problems.append(f"{where}: a deferred import without a comment saying why (the line above)")
            if target == me or target == "kon_ray":
                continue
            files[me].add(target)
            a, b = unit_of(me), unit_of(target)
            if a == b:
                continue
            units[a].add(b)
            if a not in rank or b not in rank:
                problems.append(f"{where}: {a} or {b} is in no layer (LAYERS in scripts/check_layers.py)")
            elif rank[b] > rank[a]:
                problems.append(f"{where}: {a} ({LAYERS[layer_of[a]][0]}) imports {target}, above it"
                                f" ({b}, {LAYERS[layer_of[b]][0]})")
    unit_loops = cycles(units)
    file_loops = cycles(files)
    problems += [f"package loop: {' <-> '.join(loop)}" for loop in unit_loops]
    problems += [f"file cycle: {' <-> '.join(loop)}" for loop in file_loops]
    if len(deferred) > DEFERRED_BUDGET:
        problems.append(f"{len(deferred)} deferred own-module imports, more than {DEFERRED_BUDGET}:")
        problems += [f"  {line}" for line in sorted(deferred)]
    if "--report" in argv:
        biggest = max((len(loop) for loop in unit_loops), default=0)
        print(f"own-module import statements: {len(statements)}; deferred: {len(deferred)}; units: {len(units)}")
        print(f"package loops: {len(unit_loops)} (largest {biggest} units); file cycles: {len(file_loops)}")
        for loop in unit_loops + file_loops:
            print("  loop:", " ".join(loop))
        return 0
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
