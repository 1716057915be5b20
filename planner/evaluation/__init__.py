"""Evaluation harness: replay held-out historical runs, sweep the budget, compare the planner with baselines.

`harness.evaluate` is the entry point (k-fold query-level cross-fitting, acceptance targets); `replay` the
realised outcomes and out-of-fold forecasts (`coverage`: which tiers and queries it keeps, on dense and on
sparse logs; `recorded`: the recorded strategies); `diagnostics` calibration, bootstrap intervals and
forecast resolution; `policies` the planner (budgeted plans from `planner.solve`) and the baselines;
`metrics` APGR/CPT (RouteLLM) and AIQ (RouterBench); `simulated` the marked-as-simulated strategy figures;
`strategy_figures` the recorded-strategy figures; `interaction` an optional calibration of a forecaster's
query x tier interaction; `forecasters` which forecaster to train; `plots` the PNG.
"""
