"""One drift check from end to end, shared by the pipeline stage and the standalone command: fit (or load) the
reference, count the current data, compare, write the reports."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

from kon_ray import storage
from kon_ray.drift import reference as reference_io
from kon_ray.drift.compare import compare, skipped_columns, summarise
from kon_ray.drift.config import DriftConfig
from kon_ray.drift.engine import fit_and_summarise, summarise_current
from kon_ray.drift.html import render
from kon_ray.drift.prediction import not_available
from kon_ray.drift.report import (
    REFERENCE_SUMMARY,
    REPORT_HTML,
    REPORT_JSON,
    SUMMARY_TXT,
    build_report,
    headline,
    report_json,
    summary_text,
)
from kon_ray.stages import GateVerdict

if TYPE_CHECKING:
    from kon_ray.drift.segments import SegmentRules

log = logging.getLogger(__name__)


def run_check(
    cfg: DriftConfig,
    current,
    output_dir: str,
    reference=None,
    reference_summary: Optional[str] = None,
    exclude: Sequence[str] = (),
    prediction: Optional[Callable[[], Dict[str, Any]]] = None,
    current_label: str = "",
    skip: Optional[Dict[str, str]] = None,
    derive: Optional["SegmentRules"] = None,
) -> Dict[str, Any]:
    """Check `current` against `reference` (data) or `reference_summary` (a saved summary); write
    reference_summary.json, drift_report.json, drift_summary.txt and drift_report.html under output_dir; return
    the report. `prediction` returns the prediction-drift block (default: "no model available"). `skip`: columns
    of the reference left out with the reason (identifiers, the command's exclude), listed under `skipped` in the
    report, its page and the saved summary, unlike `exclude`, which leaves a column out without a word. `derive`:
    the segment columns made from each batch of both sides rather than read (the pipeline's estrato and cluster)."""
    clock = time.perf_counter()
    if reference_summary:
        ref = reference_io.load(reference_summary, psi_bins=cfg.psi_bins)
        cur = summarise_current(ref, current, cfg, label=current_label, derive=derive)
    else:  # in one pass over both sides where it can (the same numbers as fit_reference, then summarise_current)
        ref, cur = fit_and_summarise(reference, current, cfg,
                                     exclude=list(exclude) + list(cfg.exclude) + list(skip or {}),
                                     current_label=current_label, derive=derive)
        if skip:
            ref = dataclasses.replace(ref, skipped={**skip, **ref.skipped})
    log.info("drift: %d reference and %d current rows summarised in %.1f s", ref.rows, cur["rows"],
             time.perf_counter() - clock)
    # written only once the current data has been read: a bad current dataset leaves the output folder untouched
    reference_io.save(ref, storage.join(output_dir, REFERENCE_SUMMARY))
    features = compare(ref, cur, cfg)
    pred = prediction() if prediction else not_available("no model available: none given to this check")
    label = current if isinstance(current, str) else (current_label or "current")
    report = build_report(features, summarise(features, cfg, pred), reference=ref.source or str(reference_summary),
                          current=label, rows={"reference": ref.rows, "current": cur["rows"]},
                          skipped=skipped_columns(ref, cur))
    write_reports(report, output_dir, cfg.plots)
    log.info("drift: %s", headline(report))
    return report


def gate(report: Dict[str, Any], cfg: DriftConfig, output_dir: str, stage: str = "drift") -> Optional[GateVerdict]:
    """With drift.fail_on_drift, the verdict that stops the check once its reports are written when the overall
    flag is raised; None otherwise. `output_dir` is where the user finds drift_summary.txt."""
    s = report["summary"]
    if not (cfg.fail_on_drift and s["drift_flag"]):
        return None
    why = f"{s['drifted']} of {s['features']} features drifted (share > {cfg.drift_share:g})"
    if s["drifted_share"] <= cfg.drift_share:
        why = f"prediction drift is HIGH ({s['drifted']} of {s['features']} features drifted)"
    # the error's kind says "drift gate" when it is printed
    return GateVerdict(stage, f"{why}; see {storage.join(output_dir, SUMMARY_TXT)}")


def metrics(report: Dict[str, Any]) -> Dict[str, Any]:
    """Small metrics for the pipeline and MLflow: counts, share, the flag as 0/1, PSI per feature and, with
    drift.segment_columns, its split `drift_mix/<feature>/<by>` + `drift_within/<feature>/<by>` = `psi/<feature>`."""
    s = report["summary"]
    out: Dict[str, Any] = {
        "features": s["features"],
        "drifted": s["drifted"],
        "drifted_share": s["drifted_share"],
        "drift_flag": int(s["drift_flag"]),
        "rows": report["rows"]["current"],
    }
    out.update({f"psi/{f['name']}": f["psi"] for f in report["features"]})
    # issue 30: the feature's PSI split into segment mix and within-segment change (they add up to psi/<feature>)
    for f in report["features"]:
        for a in f.get("attribution", ()):
            if "mix_share" in a:
                out[f"drift_mix/{f['name']}/{a['by']}"] = a["mix_share"]
                out[f"drift_within/{f['name']}/{a['by']}"] = a["within_share"]
    return out


def write_reports(report: Dict[str, Any], out_dir: str, plots: int) -> Dict[str, str]:
    """drift_report.json (strict JSON), drift_summary.txt and drift_report.html under out_dir; their paths."""
    paths = {name: storage.join(out_dir, name) for name in (REPORT_JSON, SUMMARY_TXT, REPORT_HTML)}
    storage.write_text(paths[REPORT_JSON], report_json(report))
    storage.write_text(paths[SUMMARY_TXT], summary_text(report))
    storage.write_text(paths[REPORT_HTML], render(report, plots))
    return paths
