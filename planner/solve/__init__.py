"""The batch allocation solver: a multiple-choice knapsack with side constraints, solved by frontier pruning,
the Lagrangian dual and rounding that never crosses a hard limit, with a gap certificate; plus an exact
HiGHS MILP reference for small instances.

Pure functions over numpy arrays: `solve(Problem) -> Solution`, `solve_milp(Problem) -> Solution`.
"""

from planner.solve.milp import solve_milp
from planner.solve.problem import QUALITY, SPEND, Objective, Problem, Solution, SolveStats
from planner.solve.solver import solve

__all__ = ["QUALITY", "SPEND", "Objective", "Problem", "Solution", "SolveStats", "solve", "solve_milp"]
