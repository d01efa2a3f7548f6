"""The boosting loop, resumable round by round, with no Ray in it.

`xgboost.train` restarts its round counter at 0 when it continues a model, and the round number seeds row and
column subsampling (`seed_per_iteration`); its early-stopping callback also forgets the rounds before a resume.
This loop passes the global round to `Booster.update` and carries the metric history and the best round in
`Progress`, so a run resumed from a checkpoint at round k builds the same trees as one that never stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import xgboost as xgb

from kon_ray.train.config import ModelConfig

EVAL_NAMES = ("train", "validation")
METRIC = "mlogloss"


@dataclass
class Progress:
    """Everything besides the booster that a checkpoint must hold to resume exactly."""

    history: Dict[str, List[float]] = field(default_factory=lambda: {name: [] for name in EVAL_NAMES})
    best_iteration: int = -1
    best_score: float = math.inf
    stopped_early: bool = False
    resumed_from: List[int] = field(default_factory=list)  # rounds at which a run picked up a checkpoint
    final: bool = False  # the model is the finished (best-round) model

    @property
    def rounds(self) -> int:
        return len(self.history["validation"])

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Progress":
        return cls(**json.loads(text))


def parse_eval(text: str) -> Dict[str, float]:
    """'[3]\\ttrain-mlogloss:0.51\\tvalidation-mlogloss:0.62' -> {'train': 0.51, 'validation': 0.62}."""
    out = {}
    for item in text.split("\t")[1:]:
        name, value = item.rsplit(":", 1)
        data, metric = name.rsplit("-", 1)
        if metric == METRIC:
            out[data] = float(value)
    return out


OnRound = Callable[[xgb.Booster, Progress], None]


def boost(
    params: Dict,
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    num_boost_round: int,
    early_stopping_rounds: int,
    booster: Optional[xgb.Booster] = None,
    progress: Optional[Progress] = None,
    on_round: Optional[OnRound] = None,
    callbacks: Sequence[xgb.callback.TrainingCallback] = (),
) -> Tuple[xgb.Booster, Progress]:
    """Train up to `num_boost_round` rounds in total (continuing `booster`/`progress` from a checkpoint), stopping
    when validation mlogloss has not improved for `early_stopping_rounds` (0 = never). Returns the booster cut to
    its best round and the progress (history of every round trained).

    `params["nthread"]` is the xgboost threads (`xgb_params`). `on_round(booster, progress)` runs after every round
    (checkpoints, progress reports); `callbacks` are xgboost `TrainingCallback`s, called as `xgboost.train` calls
    them (`before_training`, `after_iteration(model, epoch, evals_log)` with the global round and
    {"train"|"validation": {"mlogloss": [...]}}, `after_training`): one returning True from `after_iteration`
    stops the fit there (a scheduler ending a trial), which is recorded as `stopped_early`."""
    progress = progress or Progress()
    if booster is not None and booster.num_boosted_rounds() != progress.rounds:
        raise ValueError(
            f"checkpoint mismatch: booster has {booster.num_boosted_rounds()} rounds, history {progress.rounds}"
        )
    bst = xgb.Booster({**params}, [dtrain, dvalid], model_file=booster)
    evals = [(dtrain, "train"), (dvalid, "validation")]
    start = progress.rounds
    if booster is not None and start > 0:
        progress.resumed_from.append(start)
    base_seed = int(params.get("seed", 0))
    for callback in callbacks:
        bst = callback.before_training(bst)
    for i in range(start, num_boost_round):
        if progress.stopped_early:
            break
        bst.set_param({"seed": round_seed(base_seed, i)})
        bst.update(dtrain, iteration=i)
        scores = parse_eval(bst.eval_set(evals, iteration=i))
        for name in EVAL_NAMES:
            progress.history[name].append(scores[name])
        if scores["validation"] < progress.best_score:
            progress.best_score, progress.best_iteration = scores["validation"], i
        if early_stopping_rounds and i - progress.best_iteration >= early_stopping_rounds:
            progress.stopped_early = True
        if callbacks:
            evals_log = {name: {METRIC: list(progress.history[name])} for name in EVAL_NAMES}
            if any([callback.after_iteration(bst, i, evals_log) for callback in callbacks]):  # all of them, as xgboost
                progress.stopped_early = True
        if on_round is not None:
            on_round(bst, progress)
    for callback in callbacks:
        bst = callback.after_training(bst)
    progress.final = True
    best = bst[: progress.best_iteration + 1] if progress.best_iteration >= 0 else bst
    return best, progress


def round_seed(seed: int, round_: int) -> int:
    """The seed for one boosting round. XGBoost's sampling RNG (subsample, colsample) is not in a checkpoint: a
    booster loaded from one starts the sequence afresh (by hand, 3 + 3 rounds of bare `Booster.update` ended 0.22
    away in predicted probability from 6 uninterrupted rounds). Seeding each round from (seed, round) makes a round's
    sampling depend on nothing else, so a resumed worker draws what the uninterrupted one would."""
    return (seed + round_ * 1_000_003) % 2**31


def xgb_params(model: ModelConfig, num_class: int, nthread: int, seed: int) -> Dict[str, Any]:
    """XGBoost parameters from the `model` config (conf/model/)."""
    return {
        "objective": "multi:softprob",
        "num_class": num_class,
        "eval_metric": METRIC,
        "max_depth": model.max_depth,
        "eta": model.eta,
        "subsample": model.subsample,
        "colsample_bytree": model.colsample_bytree,
        "min_child_weight": model.min_child_weight,
        "lambda": model.reg_lambda,
        "tree_method": model.tree_method,
        "max_bin": model.max_bin,
        "nthread": nthread,
        "seed": seed,
        "seed_per_iteration": True,  # the round number reseeds subsampling: exact resume (see module docstring)
        "verbosity": 0,
    }
