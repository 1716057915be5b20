"""Hardware/cost model and discrete-event serving simulator.

`simulator.costmodel` prices every (tier, strategy, target) option for the planner's solver, and the serving
simulation runs on the same model, so a plan and its projection never disagree about what an option costs.
Imports only `planner.catalog` and `planner.errors`.
"""
