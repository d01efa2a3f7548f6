"""Performance without labels (issue 31): confidence-based performance estimation (CBPE) of a classifier's
accuracy and macro F1 on a window whose labels have not arrived, from its predicted class probabilities, calibrated
on a labelled reference. `estimator` is the pure core (numpy, mergeable partials); `data` reads Parquet into it;
`report` writes the JSON, text and HTML; `python -m kon_ray.performance` is the standalone command."""
