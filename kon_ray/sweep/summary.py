"""The sweep's outcome from its trial records, as pure functions: the best finished trial per population (a pruned
or failed trial never is), the lines printed at the end (each best trial's score and the one command line that
reproduces it; each failed trial's one line) and sweep_summary.json."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from kon_ray.sweep.space import reproduce_command

FINISHED, PRUNED, FAILED = "FINISHED", "PRUNED", "FAILED"
SUMMARY_FILE = "sweep_summary.json"
PAGE_FILE = "sweep.html"


def best_trials(records: Sequence[Mapping[str, Any]], populations: Sequence[str]) -> Dict[str, Any]:
    """population -> its finished trial with the lowest validation mlogloss (ties: the earlier trial), or None."""
    best: Dict[str, Any] = {}
    for population in populations:
        finished = [r for r in records if r["population"] == population and r["status"] == FINISHED]
        best[population] = min(finished, key=lambda r: (r["best_score"], r["index"])) if finished else None
    return best


def summarize(records: Sequence[Mapping[str, Any]], populations: Sequence[str], fixed: Sequence[str],
              settings: Mapping[str, Any]) -> Dict[str, Any]:
    """sweep_summary.json: settings, every trial, the best per population with its command line, the totals."""
    best = best_trials(records, populations)
    return {
        "settings": dict(settings),
        "trials": [dict(r) for r in records],
        "best": {
            population: None if trial is None else {
                "index": trial["index"], "point": trial["point"], "validation_mlogloss": trial["best_score"],
                "best_iteration": trial["best_iteration"], "trial_key": trial["trial_key"],
                "command": reproduce_command(fixed, trial["point"]),
            }
            for population, trial in best.items()
        },
        "counts": {status: sum(r["status"] == status for r in records) for status in (FINISHED, PRUNED, FAILED)},
        "rounds": sum(int(r["rounds"]) for r in records if not r.get("reused")),
    }


def format_summary(summary: Mapping[str, Any]) -> List[str]:
    """The lines printed at the end of a sweep."""
    counts = summary["counts"]
    lines = [f"sweep: {len(summary['trials'])} trial(s): {counts[FINISHED]} finished, {counts[PRUNED]} pruned, "
             f"{counts[FAILED]} failed; {summary['rounds']} boosting rounds trained"]
    for population, best in summary["best"].items():
        if best is None:
            lines.append(f"  {population}: no finished trial")
            continue
        point = " ".join(f"model.{k}={v}" for k, v in best["point"].items())
        lines.append(f"  {population}: best validation mlogloss {best['validation_mlogloss']:.6f} "
                     f"(trial {best['index']}: {point}, best round {best['best_iteration'] + 1})")
        lines.append(f"    reproduce: {best['command']}")
    for trial in summary["trials"]:
        if trial["status"] == FAILED:
            point = " ".join(f"model.{k}={v}" for k, v in trial["point"].items())
            lines.append(f"  {trial['population']} trial {trial['index']} ({point}) FAILED: {trial['error']}")
    return lines
