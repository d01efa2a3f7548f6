"""DriftCheck: exact distributed drift statistics (PSI, KS, chi-squared), a readable report and a gate.

The contract (README "Drift: the contract"):
- Feature types: string, dictionary and boolean columns are categorical, numeric columns numeric;
  `drift.column_types` overrides any column. Ids, dates, the target and `drift.exclude` are not analysed.
- PSI (psi.py): numeric bins on the exact reference quantiles at i/B (numpy's linear np.quantile), duplicates
  removed, right-closed, outer bins open, missing its own bin; categorical over the union of categories with
  missing as a category; zero proportions replaced by drift.psi_epsilon; sum (p_cur - p_ref) ln(p_cur / p_ref).
- KS (ks.py): D over non-missing values and scipy's ks_2samp(method="asymp") p-value. D comes from counts on
  reference-value edges; the report gives statistic = an attained lower bound and ks_upper, with
  exact D in [statistic, ks_upper]; the width is at most the largest reference mass strictly inside one bin
  (about 1/drift.ks_bins = 5e-4), 0 when every reference value is an edge.
- Chi-squared (chi2.py): Pearson's homogeneity test on the 2 x K table, missing a category, no correction.
- The registry (statistics.py): one frozen entry per statistic (its kinds, pure function, threshold keys and
  grade), which compare, severity, the reports and the drift history iterate.
- Severity (severity.py): PSI > psi_high HIGH; psi_moderate <= PSI <= psi_high MODERATE if p < p_value else LOW;
  below NONE. Drifted = MODERATE or HIGH. Also reported: Benjamini-Hochberg adjusted p-values and an effect size
  (numeric: KS D; categorical: Cramer's V). Overall flag: more than drift_share of features drifted, or
  prediction drift HIGH.
- Distributed (engine.py, summary.py): shards return exactly mergeable counts, so results do not depend on the
  number of shards or blocks; the reference's summary is saved (reference_summary.json, reference.py) and can
  replace the reference data in a later check with identical results.
- Attribution (attribution.py): each feature's PSI split exactly into segment mix and within-segment change per
  drift.segment_columns column, from joint tables counted in the same pass; the pipeline's estrato and cluster are
  made per batch from the segment stage's saved state (segments.py).

Public entry points:
- `kon_ray.drift.stage.run(ctx)`: the pipeline stage.
- `kon_ray.drift.check.run_check(cfg, current, output_dir, reference=..., reference_summary=...)`: one check.
- `kon_ray.drift.onepass.prediction_drift(bundles, reference_files, current_files, id_column, cfg)`: prediction
  drift with InferenceReporting's scorer (DriftCheck's registered models: kon_ray.drift.prediction).
- `kon_ray.drift.engine.fit_reference(data, cfg)` / `summarise_current(reference, data, cfg)` and
  `kon_ray.drift.compare.compare(reference, current, cfg)`: the building blocks.
- `python -m kon_ray.drift reference=PATH current=PATH output=DIR`: the standalone command.
"""
