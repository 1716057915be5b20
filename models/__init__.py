"""Difficulty predictors: per query, P(correct) for each model tier and strategy, and token quantiles.

Scikit-learn style estimators trained on historical runs from the store. The interface the planner consumes is
`models.api` (`Query`, `Forecast`, `Forecaster`). Imports only `planner.catalog` and `planner.errors`.
"""
