"""A model folder (kon_ray/train/model_folder.py) as an MLflow logged model, and its registration: shared by the
pipeline's tracker (each population's model of a run) and the sweep's (each population's best trial).

The model is created, filled and linked to its run step by step, not with `mlflow.xgboost.log_model`: that also
fetches the history of every run metric to link those at the model's step to it (one request per metric: 725
requests, 12 s a model over HTTP once drift has logged its per-feature metrics), and kon_ray's model step matches
none of them by design (the step is the model's boosting rounds, one past its curves' last step).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Callable, Mapping, Optional

from kon_ray.tracking import names, outputs
from kon_ray.tracking.common import one_line


def rounds(metadata: Mapping[str, Any]) -> int:
    """The model's boosting rounds, the step it is logged at: one past its curves' last step."""
    return max([len(values) for values in outputs.training_curves(metadata).values()] + [1])


def log_model_folder(mlflow: Any, client: Any, run_id: str, population: str, model_path: str,
                     metadata: Mapping[str, Any], features_folder: str, example_rows: int, dataset: str,
                     warn: Callable[..., None]) -> str:
    """Log the booster at `model_path` as an MLflow logged model of flavor xgboost, linked to `run_id` at step
    `rounds(metadata)`, with the model's exact input (a few rows of `features_folder`, segment columns included) as
    its example and signature; return its model id. `warn(format, *args)` says what could not be added."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import infer_signature

    with outputs.scratch_dir() as scratch:
        booster = xgb.Booster()
        booster.load_model(outputs.local_file(model_path, scratch))
    example = None
    try:  # the exact model input, segment columns included, built as the infer stage builds it
        example = outputs.model_input_example(os.path.dirname(model_path), features_folder, population, example_rows)
        if example is None:
            warn("tracking: no %s rows in %s for the model's input example", population, features_folder)
    except Exception as exc:  # a model still worth logging without its example
        warn("tracking: could not build the %s model's input example: %s", population, one_line(exc))
    signature = None
    if example is not None:
        predictions = booster.predict(xgb.DMatrix(example, enable_categorical=True))
        signature = infer_signature(example, predictions)
    params = {k: names.param_value(v) for k, v in names.flatten(metadata.get("params") or {}).items()}
    model = mlflow.initialize_logged_model(name=population, source_run_id=run_id, params=params or None,
                                           tags={"dataset": dataset, "population": population})
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="kon-model-") as scratch:
            warnings.simplefilter("ignore")
            folder = os.path.join(scratch, population)
            mlflow.xgboost.save_model(
                booster, folder, input_example=example, signature=signature,
                pip_requirements=[f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}",
                                  f"numpy=={np.__version__}"],
            )
            client.log_model_artifacts(model.model_id, folder)
    except BaseException:
        mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=rounds(metadata))])
    return str(model.model_id)


def register(mlflow: Any, client: Any, model_id: str, name: str, tags: Mapping[str, str],
             description: Optional[str]) -> str:
    """A new version of the registered model `name` from the logged model; its version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = mlflow.register_model(f"models:/{model_id}", name, tags=dict(tags))
    if description:
        client.update_model_version(name, version.version, description=description)
    return str(version.version)
