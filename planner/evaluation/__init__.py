"""Evaluation harness: replay held-out historical runs, sweep the budget, compare the planner with baselines.

`harness.evaluate` is the entry point (k-fold query-level cross-fitting, acceptance targets, calibration and
forecast-resolution diagnostics); `replay` the realised outcomes and out-of-fold forecasts; `policies` the
planner (budgeted plans from `planner.solve`) and the baselines; `metrics` APGR/CPT (RouteLLM) and AIQ
(RouterBench); `simulated` the marked-as-simulated strategy figures; `interaction` an optional calibration
of a forecaster's query x tier interaction; `forecasters` which forecaster to train; `plots` the PNG.
"""
