"""Synthetic stand-ins for the private CLIE, POLA and HFAC datasets: `python -m kon_ray.synth +dataset=POLA`.

    from kon_ray.synth.writer import ensure_sample, generate
    generate(dataset_cfg, synth_cfg, output)   # -> {"dataset", "rows", "files", "path", "seconds", "rows_per_s"}
    ensure_sample(dataset_cfg)                 # the default sample at dataset.path, unless data is already there

The contract later stages and their tests may rely on (conf/dataset/<NAME>.yaml declares the columns, their roles,
the industrial tariffs and the estrato cut points; kon_ray/synth/schema.py holds the generator's knobs and checks
the YAML against them; model.py draws the columns; tests/synth check every point below):

Records. One row per customer (`customer_id` int64, unique, unordered); `record_date` (date32) uniform over the
`synth.months` months ending at `synth.end_month` (day 1-28, from the billing cycle). Each record carries 12 months
of history: `<prefix>01` .. `<prefix>12`, where 12 is the record's own month and 01 eleven months before.
Population: `tariff_type` in `industrial_values` (comercial, industrial, industrial_mt; HFAC: gnv for the
third) is industrial (~16-20 % of rows), residencial / residencial_rural is domestic.
`avaluo_catastral` (COP, lognormal, 1 % null) cut at the YAML's segment.estrato_thresholds (the cut points the
segment stage uses, and by which the generator prices subsidies) gives domestic estratos 1-6 of about
22/33/27/9/5/3 %.

Label. `segment` in bajo_consumo, regular, alto_consumo, estacional, creciente, moroso. The class mix depends on
population, tariff, wealth (avaluo, zone), region (coastal regions: more estacional) and payment channel (cash:
more moroso); the record's behaviour then follows its class (level relative to wealth and tariff, trend,
seasonal amplitude, payment delinquency, tenure), except for 8 % of records whose behaviour follows a random
class (label noise). Every class is >= 3 % of each population, in every window. A gradient-boosted model on
engineered series features reaches roughly 75-80 % (domestic) and 60-70 % (industrial) accuracy on 20k rows.

Seasonality is per record (each record's own phase), not tied to the calendar: with drift=0 every column other
than the dates has the same distribution in every month, so a drift check on drift=0 data finds nothing real.

Drift. `synth.drift` = d (0 = none, 1 = default) acts only on records in the drift window: the last 6 months of
the span (the later half when synth.months < 12), i.e. record_date >= the first day of the 6th-last month
(2026-05-01 for the defaults). Nothing else changes with the date. In that window:
- usage series (`kwh_m01..kwh_m12` in CLIE and POLA, `gas_m3_m01..gas_m3_m12` in HFAC): every value x(1 + 0.45 d),
  +45 % at d=1, before rounding, zero months and spikes (a hot season plus new appliances: chosen so that PSI
  with 10 reference-quantile bins is 0.11-0.2 per usage column at d=1, MODERATE for the drift stage; at d=0.5,
  +22.5 %, only the KS test sees it). Within one population and class the median moves by that factor (up to
  sampling noise); the marginal also moves a little with the class mix. `avg_consumption_6m` and POLA's
  `peak_demand_kw` follow.
- `bill_m01..bill_m12`: the unit price rises x(1 + 0.10 d) on top of the usage shift, so the variable part of a
  bill rises ~60 % at d=1 (the fixed charge does not move); CLIE's `paid_m*` follow the bills;
  `outstanding_balance` and CLIE's `tax_amount` rise with the price (+10 %).
- `payment_channel` gains "app" (min(0.12 d, 0.6) of the window's records; never present before).
- `meter_brand` gains "Hexing" (CLIE, POLA) / "Diehl" (HFAC) (min(0.15 d, 0.6) of the window; never before);
  those meters are new, so `meter_age_years` drops for them (uniform 0-0.5 years).
- `meter_age_years` null rate: 3 % -> 3 % + 12 % x min(d, 4) (15 % at d=1).
- class mix: logits shift by d x (estacional -0.35, creciente +0.45, moroso +0.75); at d=1 moroso goes from
  ~15 % to ~26 % of domestic records, estacional from ~11 % to ~8 %, creciente from ~7 % to ~9 %. Columns that
  follow the class (days_past_due, late_payments_12m, last_payment_date, contract_start...) move with it.
With d=0 none of these happen: no "app", no new brand, same null rates, same class mix, same values. Records
outside the window are identical whatever d is (d never changes which random numbers are drawn).

Determinism. Rows come from fixed blocks of model.BLOCK_ROWS (1000) rows, each drawn from a numpy Generator
seeded by SeedSequence([synth.seed, dataset code, block index]); files are cut from the blocks. So the same
seed and rows give byte-identical Parquet parts, `synth.rows_per_file` changes only how rows are split into
files, and the first N rows of a bigger dataset are the N rows of a smaller one. Memory is one part at a time per
process (`synth.workers` processes), whatever synth.rows is.
"""
