"""One small sweep end to end (tiny POLA, 20 boosting rounds, one population): its trials run at once on Ray Tune,
the planted hopeless trials (model.eta=0.0001) are stopped early while the good ones finish, a failing trial does not
stop the others, the best equals the sequential grid's (every point trained one after another here, with the same
boosting loop), MLflow has the parent and a child per trial, the page shows it all in Chromium, and running the
sweep again reuses the finished trials. Also: the seeded search proposes the same points with the same seed."""

from __future__ import annotations

import json
import math

import pytest

from kon_ray.sweep.__main__ import DIE_ONCE_ENV, FAIL_ENV, main
from kon_ray.sweep.space import parse_command_line
from tests.chromium import dump_dom, needs_chromium
from tests.conftest import generate_pola

GRID = ["model.max_depth=3,4", "model.eta=0.3,0.1,0.0001"]  # 6 points: 2 and 5 are hopeless, 4 fails (planted)
HOPELESS, FAILING = {2, 5}, 4


def _sequential_grid(args, sweep_dir):
    """Every grid point trained one after another in this process, with the sweep's own data and boosting loop:
    {index: best validation mlogloss}."""
    from kon_ray.config import load_config, to_plain
    from kon_ray.sweep import driver
    from kon_ray.sweep.__main__ import compose
    from kon_ray.sweep.space import grid, model_for
    from kon_ray.sweep.trial import population_data
    from kon_ray.train.boost import boost, xgb_params
    from kon_ray.train.worker import build_matrices

    command = parse_command_line(args)
    cfg = compose(command.fixed, str(sweep_dir))
    config = load_config(cfg)
    ctx = driver.shared_stages(config, to_plain(cfg), str(sweep_dir), lambda: None)  # all reused from the cache
    inputs = driver.training_inputs(ctx)
    from dataclasses import asdict

    classes = inputs.classes["domestic"]
    train, valid = population_data(inputs.train_dir, inputs.columns, dict(
        population="domestic", features=inputs.features, classes=classes,
        segment_state=asdict(inputs.segment_state), id_column=config.dataset.id_column,
        target_column=config.dataset.target_column, validation_fraction=config.model.validation_fraction,
        seed=config.seed))
    scores = {}
    for index, point in enumerate(grid(command.dimensions)):
        model = model_for(config.model, point)
        dtrain, dvalid = build_matrices(train, valid, len(inputs.features), model.max_bin, 1)
        _, progress = boost(xgb_params(model, len(classes), 1, config.seed), dtrain, dvalid, model.num_boost_round,
                            model.early_stopping_rounds)
        scores[index] = progress.best_score
    return scores


@pytest.mark.slow
@needs_chromium
def test_a_sweep_runs_trials_at_once_prunes_the_hopeless_and_tracks_every_trial(ray_session, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    data = generate_pola(tmp_path / "pola", 3000)
    monkeypatch.chdir(tmp_path)
    sweep_dir = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fixed = ["+dataset=POLA", f"dataset.path={data}", "debug=tiny", f"tracking.uri={uri}"]
    settings = ["sweep.populations=[domestic]", "sweep.max_concurrent=2", "sweep.grace_period=3"]
    monkeypatch.setenv(FAIL_ENV, json.dumps({"max_depth": 4, "eta": 0.1}))
    assert main(fixed + GRID + settings + [f"sweep.dir={sweep_dir}"]) == 1  # one trial failed, the others ran
    monkeypatch.delenv(FAIL_ENV)
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    trials = {t["index"]: t for t in summary["trials"]}
    assert sorted(trials) == [0, 1, 2, 3, 4, 5]

    # faults: the failing trial is reported with its one line; every other trial ran
    assert trials[FAILING]["status"] == "FAILED"
    assert trials[FAILING]["error"] == "RuntimeError: planted failure for {'max_depth': 4, 'eta': 0.1}"
    # the hopeless trials were stopped at a rung (round 3 or 9 of 20), with the rule; the eta=0.3 trials finished
    for index in HOPELESS:
        assert trials[index]["status"] == "PRUNED", trials[index]
        assert trials[index]["rounds"] in (3, 9) and len(trials[index]["curve"]) == trials[index]["rounds"]
        assert trials[index]["stopped_by"].startswith("ASHA: validation mlogloss not in the best 1/3")
    assert trials[0]["status"] == trials[3]["status"] == "FINISHED"
    # at once: two trials' own timestamps overlap (each trial's first and last report, not the driver's view)
    spans = sorted((t["started_at"], t["ended_at"]) for t in trials.values() if t["started_at"] is not None)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans

    # the best equals the sequential grid's best over the same points; every finished trial's score is exact
    sequential = _sequential_grid(fixed + GRID, tmp_path / "oracle")
    sequential.pop(FAILING)
    oracle_best = min(sequential, key=lambda i: (sequential[i], i))
    best = summary["best"]["domestic"]
    assert best["index"] == oracle_best
    assert best["validation_mlogloss"] == pytest.approx(sequential[oracle_best], rel=1e-9)
    for index, trial in trials.items():
        if trial["status"] == "FINISHED":
            assert trial["best_score"] == pytest.approx(sequential[index], rel=1e-9)
    assert best["command"] == (f"python -m kon_ray.run +dataset=POLA dataset.path={data} debug=tiny "
                               f"tracking.uri={uri} model.max_depth={trials[oracle_best]['point']['max_depth']} "
                               f"model.eta={trials[oracle_best]['point']['eta']}")
    assert (sweep_dir / "best" / "models" / "domestic" / "model.ubj").is_file()

    # MLflow: one parent, a child per trial with its status, curve and (pruned) round; the best on the parent
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("kon_ray").experiment_id])
    parent = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert len(parent) == 1 and parent[0].info.status == "FAILED"
    children = {int(r.data.tags["mlflow.runName"].split("trial")[1].split()[0]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert sorted(children) == sorted(trials)
    for index, child in children.items():
        assert child.data.tags["trial_status"] == trials[index]["status"]
        curve = client.get_metric_history(child.info.run_id, "validation_mlogloss")
        assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(trials[index]["curve"])
    for index in HOPELESS:
        assert children[index].data.tags["pruned_at_round"] == str(trials[index]["rounds"])
        assert children[index].info.status == "KILLED"
    assert parent[0].data.metrics["best/domestic/validation_mlogloss"] == pytest.approx(best["validation_mlogloss"])
    assert parent[0].data.tags["best.domestic.run_id"] == children[oracle_best].info.run_id
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {"sweep.html", "sweep_summary.json"}

    # the page, laid out by Chromium: 5 curves (the failed trial reported none), a cross where each pruned one
    # stopped, the best highlighted
    dom = dump_dom(sweep_dir / "sweep.html", tmp_path / "chromium")
    assert dom.count('<polyline class="trial') == 5
    for index in HOPELESS:
        assert f'<path class="stop" data-trial="{index}" data-round="{trials[index]["rounds"]}"' in dom
    assert f'class="trial finished best" data-trial="{oracle_best}"' in dom
    assert dom.count('<polyline class="trial finished best"') == 1
    assert dom.count('<tr class="finished best"') == 1

    # running (part of) the sweep again reuses the finished trials: no boosting round trained; this time every trial
    # ran, so with tracking.register_models=true the best model is registered
    again = tmp_path / "again"
    assert main(fixed + ["model.max_depth=3,4", "model.eta=0.3", "tracking.register_models=true"] + settings
                + [f"sweep.dir={again}"]) == 0
    rerun = json.loads((again / "sweep_summary.json").read_text())
    (version,) = client.search_model_versions("name='POLA-domestic'")  # none from the first sweep: a trial failed
    again_parent = [r for r in client.search_runs([parent[0].info.experiment_id])
                    if r.data.tags.get("sweep") == "parent" and r.info.run_id != parent[0].info.run_id][0]
    assert version.tags["sweep_run_id"] == again_parent.info.run_id
    assert version.tags["run_id"] == again_parent.data.tags["best.domestic.run_id"] == version.run_id
    assert json.loads(version.tags["sweep.point"]) == rerun["best"]["domestic"]["point"]
    import mlflow
    import xgboost as xgb

    mlflow.set_tracking_uri(uri)
    registered = mlflow.xgboost.load_model(f"models:/POLA-domestic/{version.version}")
    best_model = xgb.Booster()
    best_model.load_model(str(again / "best" / "models" / "domestic" / "model.ubj"))
    assert bytes(registered.save_raw("ubj")) == bytes(best_model.save_raw("ubj"))
    assert [t["reused"] for t in rerun["trials"]] == [1, 1] and rerun["rounds"] == 0
    # finished before, finished now, even when ASHA stops the replay of one's curve (it did, on a loaded machine)
    assert [t["status"] for t in rerun["trials"]] == ["FINISHED", "FINISHED"]
    assert [t["best_score"] for t in rerun["trials"]] == [trials[0]["best_score"], trials[3]["best_score"]]

    # a trial whose process is lost mid-sweep runs again (sweep.retries=1) and finishes as if nothing had happened:
    # the sequential grid's exact score
    lost, points = tmp_path / "lost", ["model.max_depth=5,6", "model.eta=0.3"]
    monkeypatch.setenv(DIE_ONCE_ENV, json.dumps({"max_depth": 5}))  # the swept key of the point
    assert main(fixed + points + settings + [f"sweep.dir={lost}"]) == 0
    monkeypatch.delenv(DIE_ONCE_ENV)
    assert len(list(tmp_path.rglob("died-once-*"))) == 1  # the first process of the max_depth=5 trial exited
    retried = json.loads((lost / "sweep_summary.json").read_text())["trials"]
    assert [(t["status"], t["reused"]) for t in retried] == [("FINISHED", 0), ("FINISHED", 0)]
    oracle = _sequential_grid(fixed + points, tmp_path / "oracle_lost")
    assert [t["best_score"] for t in retried] == pytest.approx([oracle[0], oracle[1]], rel=1e-9)


def test_the_search_is_reproducible_with_its_seed():
    """OptunaSearch (TPE) with one seed proposes the same points; with another seed, others (no trial runs)."""
    from kon_ray.sweep.tuner import searcher

    dims = parse_command_line(["model.eta=interval(0.01,0.3)", "model.max_depth=range(3,10)"]).dimensions

    def proposals(seed):
        search = searcher(dims, seed)
        return [search.suggest(f"t{i}") for i in range(6)]

    first = proposals(7)
    assert first == proposals(7)
    assert first != proposals(8)
    assert all(0.01 <= p["eta"] <= 0.3 and p["max_depth"] in range(3, 10) for p in first)
    assert all(isinstance(p["max_depth"], int) and not math.isnan(p["eta"]) for p in first)


