"""MLflow tracking and sweeps. Nothing here imports MLflow at import time: with tracking=off it is never loaded.

- config.py   TrackingConfig (conf/tracking/)
- uri.py      which tracking URI, checked before the pipeline starts
- names.py    config -> params, stage metrics -> metric names (pure)
- outputs.py  reading the stages' published folders (pure)
- tracker.py  one MLflow run per pipeline run: the pipeline's StageObserver
- registry.py latest_model(): the last model of a dataset's population, for prediction drift
- sweep.py    Hydra callback: parent run per multirun, sweep_summary.json
"""
