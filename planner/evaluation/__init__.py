"""Evaluation harness: replay held-out historical runs, sweep the budget, compare the planner with baselines.

`harness.evaluate` is the entry point; `metrics` holds APGR/CPT (RouteLLM) and AIQ (RouterBench); `policies`
the planner and the baselines; `replay` the realised outcomes; `plots` the quality-vs-cost PNG.
"""
