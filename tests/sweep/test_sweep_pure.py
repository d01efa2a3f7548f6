"""The sweep's pure parts, no Ray started: reading the command line (grid, ranges, intervals, the one-line errors),
the sweep.* schema, the best trial and the printed lines, the page's structure. (The seeded search's proposals are
checked in test_sweep_run.py, which imports Ray Tune anyway.)"""

from __future__ import annotations

import pytest

from kon_ray.errors import ConfigError
from kon_ray.sweep.__main__ import load_sweep_config, main
from kon_ray.sweep.config import SweepConfig
from kon_ray.sweep.page import render
from kon_ray.sweep.space import INTERVAL, RANGE, check_space, grid, parse_command_line, reproduce_command
from kon_ray.sweep.summary import best_trials, format_summary, summarize
from kon_ray.sweep.tuner import asha_rule, default_concurrency
from kon_ray.train.config import ModelConfig


def test_grid_syntax_is_hydras_and_expands_like_its_basic_sweeper():
    cmd = parse_command_line(["+dataset=POLA", "model.max_depth=4,6", "model.eta=0.05,0.1", "model.num_boost_round=9",
                              "sweep.max_concurrent=2"])
    assert cmd.fixed == ("+dataset=POLA", "model.num_boost_round=9")
    assert cmd.sweep == {"max_concurrent": 2}
    assert [(d.key, d.values) for d in cmd.dimensions] == [("max_depth", (4, 6)), ("eta", (0.05, 0.1))]
    # the first key varies slowest, as `python -m kon_ray.run -m` numbers its jobs
    assert grid(cmd.dimensions) == [{"max_depth": 4, "eta": 0.05}, {"max_depth": 4, "eta": 0.1},
                                    {"max_depth": 6, "eta": 0.05}, {"max_depth": 6, "eta": 0.1}]


def test_ranges_and_intervals_take_the_keys_types():
    cmd = parse_command_line(["model.max_depth=range(3,10)", "model.eta=interval(0.01,0.3)",
                              "model.subsample=tag(log,interval(0.5,1))", "model.min_child_weight=1,2"])
    depth, eta, subsample, weight = cmd.dimensions
    assert (depth.kind, depth.values, depth.integer) == (RANGE, (3, 4, 5, 6, 7, 8, 9), True)
    assert (eta.kind, eta.low, eta.high, eta.log) == (INTERVAL, 0.01, 0.3, False)
    assert (subsample.low, subsample.high, subsample.log) == (0.5, 1.0, True)
    assert weight.values == (1.0, 2.0) and all(isinstance(v, float) for v in weight.values)


@pytest.mark.parametrize("args, message", [
    (["model.tree_method=range(1,3)"], "model.tree_method: range(...) needs a numeric key"),
    (["model.tree_method=interval(0,1)"], "model.tree_method: interval(...) needs a numeric key"),
    (["model.max_depth=4.5,6"], "model.max_depth: expected an integer, got 4.5"),
    (["seed=1,2"], "seed: trials vary model.* keys only"),
    (["dataset.segment.clusters=3,4"], "dataset.segment.clusters: trials vary model.* keys only"),
    (["model.eta=interval(0.3,0.1)"], "model.eta: interval(0.3,0.1) is empty"),
    (["model.eta=0.1,0.2", "model.eta=0.3,0.4"], "model.eta is swept twice"),
])
def test_command_line_mistakes_are_one_line_config_errors(args, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("*", r"\*")):
        parse_command_line(args)


def test_space_is_checked_before_anything_starts():
    model = ModelConfig()
    grid_sweep, search = SweepConfig(), SweepConfig(search="optuna", trials=4)
    interval = parse_command_line(["model.eta=interval(0.01,0.3)"]).dimensions
    with pytest.raises(ConfigError, match=r"^model\.eta=interval\(\.\.\.\) has no grid"):
        check_space(interval, grid_sweep, model)
    check_space(interval, search, model)  # a search samples it
    with pytest.raises(ConfigError, match=r"^model\.eta must be in \(0, 1\], got 0\.0"):
        check_space(parse_command_line(["model.eta=0.1,0.0"]).dimensions, grid_sweep, model)
    with pytest.raises(ConfigError, match=r"^model\.validation_fraction cannot vary between trials"):
        check_space(parse_command_line(["model.validation_fraction=0.1,0.2"]).dimensions, grid_sweep, model)
    with pytest.raises(ConfigError, match="^nothing to sweep"):
        check_space((), grid_sweep, model)


def test_sweep_keys_are_a_frozen_schema():
    assert load_sweep_config({"search": "optuna", "trials": "40", "seed": "7"}) == \
        SweepConfig(search="optuna", trials=40, seed=7)
    with pytest.raises(ConfigError, match=r"^unknown config key sweep\.max_concurent: did you mean sweep\.max_conc"):
        load_sweep_config({"max_concurent": "2"})
    with pytest.raises(ConfigError, match=r"^sweep\.search=optuna needs a budget"):
        load_sweep_config({"search": "optuna"})
    with pytest.raises(ConfigError, match=r"^sweep\.trials"):
        load_sweep_config({"trials": "3"})
    with pytest.raises(ConfigError, match=r"^sweep\.trials"):
        load_sweep_config({"trials": "many"})
    assert default_concurrency(16, 4) == 4 and default_concurrency(3, 1) == 3 and default_concurrency(1, 4) == 1


@pytest.mark.parametrize("args, line", [
    (["+dataset=POLA", "model.max_dept=4,6"], "unknown config key model.max_dept: did you mean model.max_depth?"),
    (["+dataset=POLA", "model.tree_method=range(1,3)"], "model.tree_method: range(...) needs a numeric key"),
    (["+dataset=POLA", "model.max_depth=4,6", "sweep.serch=grid"], "unknown config key sweep.serch"),
])
def test_the_command_exits_2_with_one_line_before_anything_starts(args, line, capsys, caplog, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit_:  # kon_ray.cli's key check exits itself, as for kon_ray.run
        code = exit_.code
    assert code == 2
    said = capsys.readouterr().err + caplog.text
    assert line in said
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no cache, no MLflow store


def _trial(population, index, status, score, curve, point):
    return {"population": population, "index": index, "status": status, "point": point, "curve": curve,
            "rounds": len(curve), "best_score": score if status == "FINISHED" else None,
            "best_iteration": curve.index(min(curve)) if status == "FINISHED" else None, "trial_key": f"k{index}",
            "error": "RuntimeError: boom" if status == "FAILED" else None, "reused": 0,
            "stopped_by": "ASHA" if status == "PRUNED" else None}


RECORDS = [
    _trial("domestic", 0, "FINISHED", 0.50, [0.9, 0.6, 0.50], {"max_depth": 3, "eta": 0.1}),
    _trial("domestic", 1, "PRUNED", None, [0.4], {"max_depth": 3, "eta": 0.3}),  # lower so far: never best
    _trial("domestic", 2, "FINISHED", 0.45, [0.8, 0.45, 0.47], {"max_depth": 5, "eta": 0.1}),
    _trial("domestic", 3, "FAILED", None, [], {"max_depth": 5, "eta": 0.3}),
    _trial("industrial", 0, "FINISHED", 1.2, [1.3, 1.2], {"max_depth": 3, "eta": 0.1}),
    _trial("industrial", 1, "FINISHED", 1.2, [1.4, 1.2], {"max_depth": 3, "eta": 0.3}),  # a tie: the earlier wins
]


def test_best_is_the_lowest_finished_trial_never_a_pruned_or_failed_one():
    best = best_trials(RECORDS, ["domestic", "industrial"])
    assert (best["domestic"]["index"], best["industrial"]["index"]) == (2, 0)
    assert best_trials(RECORDS[1:2], ["domestic"]) == {"domestic": None}


def test_the_summary_prints_each_best_with_its_command_and_each_failure():
    summary = summarize(RECORDS, ["domestic", "industrial"], ["+dataset=POLA", "model.max_depth=9"], {})
    assert summary["counts"] == {"FINISHED": 4, "PRUNED": 1, "FAILED": 1}
    assert summary["rounds"] == 3 + 1 + 3 + 0 + 2 + 2
    assert summary["best"]["domestic"]["command"] == \
        "python -m kon_ray.run +dataset=POLA model.max_depth=5 model.eta=0.1"
    assert format_summary(summary) == [
        "sweep: 6 trial(s): 4 finished, 1 pruned, 1 failed; 11 boosting rounds trained",
        "  domestic: best validation mlogloss 0.450000 (trial 2: model.max_depth=5 model.eta=0.1, best round 2)",
        "    reproduce: python -m kon_ray.run +dataset=POLA model.max_depth=5 model.eta=0.1",
        "  industrial: best validation mlogloss 1.200000 (trial 0: model.max_depth=3 model.eta=0.1, best round 2)",
        "    reproduce: python -m kon_ray.run +dataset=POLA model.max_depth=3 model.eta=0.1",
        "  domestic trial 3 (model.max_depth=5 model.eta=0.3) FAILED: RuntimeError: boom",
    ]
    assert reproduce_command(["+dataset=POLA", "tracking.uri=sqlite:///a b.db"], {"eta": 0.05}) == \
        "python -m kon_ray.run +dataset=POLA 'tracking.uri=sqlite:///a b.db' model.eta=0.05"


def test_the_page_draws_every_curve_marks_stops_and_the_best():
    html = render(summarize(RECORDS, ["domestic", "industrial"], ["+dataset=POLA"], {}), "POLA sweep")
    assert html.count('<polyline class="trial') == 5  # the failed trial reported no round
    assert html.count('class="trial pruned"') == 1
    assert html.count('<path class="stop" data-trial="1" data-round="1"') == 1
    assert html.count('class="trial finished best" data-trial="2"') == 1
    assert html.count('class="trial finished best" data-trial="0"') == 1  # industrial's
    assert html.count('<svg class="by-param"') == 4  # max_depth and eta, per population
    assert "<script" not in html and "http" not in html


def test_the_pruning_rule_is_said_in_words():
    assert asha_rule(SweepConfig(grace_period=5, reduction_factor=3)) == (
        "ASHA: validation mlogloss not in the best 1/3 of the trials at the same round (rungs from round 5, x3)")


CLUSTER = ["+dataset=POLA", "cluster=ray", "cluster.address=http://h:8265", "cluster.train_workers=3",
           "model.max_depth=3,4", "sweep.max_concurrent=2"]


def test_cluster_ray_submits_the_whole_sweep_as_one_job_and_exits_with_its_code(tmp_path, monkeypatch):
    """Checked here, run there: one `python -m kon_ray.sweep` job joining the cluster's Ray, with the paths this side
    resolved (the cache beside an s3:// sweep folder); the command exits with the job's code; nothing is written
    here. (The job itself: tests/cluster/test_multinode.py.)"""
    from kon_ray.sweep import job

    monkeypatch.chdir(tmp_path)
    sent = {}

    def submit_job(config, module, args, address, env_vars):
        sent.update(module=module, args=list(args), address=address, env_vars=env_vars)
        return 4  # whatever the job's driver exited with

    monkeypatch.setattr(job, "submit_job", submit_job)
    assert main(CLUSTER + ["tracking.uri=http://mlflow:5000", "sweep.dir=s3://b/sweeps/s1", "output_dir=x",
                           "cluster.auth_token_file=/home/me/token"]) == 4
    assert sent["module"] == "kon_ray.sweep" and sent["address"] == "http://h:8265"
    assert sent["env_vars"] == {"RAY_JOB_STOP_WAIT_TIME_S": "30"}  # time to end the parent run KILLED on Ctrl-C
    *args, submitted = sent["args"]
    assert args == [
        "+dataset=POLA", "model.max_depth=3,4", "sweep.max_concurrent=2", "tracking.uri=http://mlflow:5000",
        "cluster=local", "cluster.address=auto", "cluster.train_workers=3", "cluster.cpus_per_train_worker=1",
        f"dataset.path='{tmp_path / 'data' / 'POLA'}'", "cache_dir='s3://b/sweeps/.cache'",
        "sweep.dir='s3://b/sweeps/s1'",
    ]
    # the user's own unswept overrides, secrets masked: the job prints its reproduce lines with them
    assert load_sweep_config(parse_command_line([submitted]).sweep).submitted_overrides == (
        "+dataset=POLA cluster=ray cluster.address=http://h:8265 cluster.train_workers=3 "
        "tracking.uri=http://mlflow:5000 output_dir=x 'cluster.auth_token_file=***'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, line", [
    (["tracking.uri=http://mlflow:5000", "cluster.nodes=3"],
     "sweep.dir is '{tmp}/multirun/POLA/"),  # ... a local path, but cluster=ray may run the sweep's trials on 3 nodes
    (["sweep.dir=s3://b/s", "cache_dir=/c"], "is sqlite:///{tmp}/mlflow.db, a file on this machine, but cluster=ray"),
])
def test_a_sweep_that_could_not_work_on_the_cluster_is_refused_before_submitting(args, line, tmp_path, monkeypatch,
                                                                                 caplog):
    from kon_ray.sweep import job

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(job, "submit_job", lambda *a, **k: pytest.fail("submitted"))
    assert main(CLUSTER + args) == 2
    assert line.format(tmp=tmp_path) in caplog.text
    with pytest.raises(ConfigError, match=r"^cache_dir is '/c', a local path, but cluster=ray may run the sweep's "
                                          r"trials on 2 nodes: set cache_dir=s3://BUCKET/PREFIX"):
        job.check_shared_folders(job.RayCluster(address="http://h:8265", nodes=2), "s3://b/s", "/c")


EC2 = ["+dataset=POLA", "cluster=ec2", "cluster.image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/kon-ray:0.1.0",
       "cluster.instance_profile_arn=arn:aws:iam::123456789012:instance-profile/kon-ray-dev-ray-node",
       "cluster.security_group_id=sg-0123456789abcdef0", "cluster.subnet_id=subnet-0123456789abcdef0",
       "cluster.kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
       "cluster.auth_token_secret=arn:aws:secretsmanager:eu-west-1:123456789012:secret:kon-ray-dev-ray-token-AbCdEf",
       "cluster.port_forward=false", "dataset.path=s3://b/POLA", "tracking.uri=http://mlflow:5000",
       "model.max_depth=3,4"]


def test_cluster_ec2_brings_its_head_up_and_submits_the_whole_sweep_to_it_as_one_job(tmp_path, monkeypatch):
    """cluster=ec2: the run's own path (template rendered and validated, the token found before `ray up`, the
    head's address), then the same one job as cluster=ray. `ray up` itself needs AWS: its head is stood in for."""
    from kon_ray.cluster import ec2
    from kon_ray.sweep import job

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0k3n")
    monkeypatch.setattr(ec2, "ensure_up", lambda rendered, runner=None: "10.0.0.9")
    sent = {}

    def submit_job(config, module, args, address, token, env_vars):
        sent.update(module=module, args=list(args), address=address, token=token.source)
        return 0

    monkeypatch.setattr(job, "submit_job", submit_job)
    assert main(EC2 + ["sweep.dir=s3://b/sweeps/s1"]) == 0
    assert (sent["module"], sent["address"], sent["token"]) == ("kon_ray.sweep", "http://10.0.0.9:8265",
                                                                "RAY_AUTH_TOKEN")
    args = sent["args"][:-1]
    assert args[:3] == ["+dataset=POLA", "tracking.uri=http://mlflow:5000", "model.max_depth=3,4"]
    assert args[3:5] == ["cluster=local", "cluster.address=auto"]  # the job's driver joins the cluster's Ray
    assert args[-3:] == ["dataset.path='s3://b/POLA'", "cache_dir='s3://b/sweeps/.cache'",
                         "sweep.dir='s3://b/sweeps/s1'"]
    assert not any(a.startswith("cluster=ec2") or a.startswith("cluster.image") for a in args)
    assert (tmp_path / "outputs" / "cluster" / "kon-ray.yaml").exists()  # the launcher's template, rendered


def test_a_sweep_on_ec2_with_a_local_sweep_folder_is_refused_before_the_cluster_starts(tmp_path, monkeypatch, caplog):
    from kon_ray.cluster import ec2

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ec2, "ensure_up", lambda *a, **k: pytest.fail("ray up"))
    assert main(EC2) == 2
    assert (f"sweep.dir is '{tmp_path}/multirun/POLA/" in caplog.text
            and "a local path, but cluster=ec2 may run the sweep's trials on 5 nodes" in caplog.text)
