"""Cost-aware compute allocation planner for LLM inference.

The package ties the difficulty predictors (`models`) and the hardware/cost model and serving simulator
(`simulator`) together into options, a budget-constrained solver, online routing, a run store and a gRPC
service.
Importing `planner` itself is cheap: submodules are imported on demand.
"""

__version__ = "0.1.0"
