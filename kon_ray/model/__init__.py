"""A trained model as the stages use it: the bundle (booster, metadata, segment state), scoring a batch, and the
classification metrics of its predictions. Below both drift (prediction drift) and infer (the reports)."""
