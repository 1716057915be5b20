"""Turning a Lagrangian choice into a plan that never exceeds a hard limit, then spending what is left.

1. Repair: while some constraint is over its limit, move rows to options that use no more of *any* resource,
   cheapest first in value lost per unit of (relative) excess freed, stopping as soon as every excess is gone.
2. Upgrade: while some row can gain value with an option that fits the remaining slack of every constraint,
   take the best gains per unit of (slack-normalised) resource first (Toyoda's effective gradient; for one
   constraint this is the classic greedy on incremental efficiencies).

Both passes are vectorised over rows; each round moves many rows at once.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from planner.solve.dense import F64, I64, Dense, totals


def margin(b: F64, scale: F64) -> F64:
    """Safety margin under each limit so that re-summing in another order can never cross it."""
    return 1e-12 * np.maximum(np.abs(b), scale) + 1e-300


def limits(d: Dense, safe: bool) -> F64:
    """The limits the rounding works to: `d.b`, less a re-summation margin when `safe`.

    The margin is needed when the final check sums in another order than `totals` does (screened instances
    fold fixed rows into constants); a plan on the full dense copy is summed the same way, so it may fit
    exactly.
    """
    if not safe:
        return d.b
    scale = np.abs(d.A).reshape(d.k, -1).max(axis=1, initial=0.0) * d.n
    return d.b - margin(d.b, scale)


def repair(
    d: Dense, choice: I64, deadline: float | None = None, max_rounds: int = 10_000, safe: bool = True
) -> I64 | None:
    """Move rows until no constraint is exceeded; None when no sequence of such moves was found.

    A move may not use more of an exceeded constraint, and may use more of a satisfied one only within its
    slack (checked on the cumulative sum of the moves taken in one round), so every round strictly shrinks
    the excess without creating a new one.
    """
    choice = choice.copy()
    rows = np.arange(d.n)
    limit = limits(d, safe)
    for _ in range(max_rounds):
        _, usage = totals(d, choice)
        excess = usage - limit
        viol = excess > 0
        if not viol.any():
            return choice
        moved = _repair_round(d, choice, rows, excess, viol)
        if not moved:  # nothing left to move: accept a plan that meets the limits without margin
            return choice if np.all(usage <= d.b) else None
        if deadline is not None and time.perf_counter() > deadline + 5.0:
            break
    _, usage = totals(d, choice)
    return choice if np.all(usage <= limit) else None


def _repair_round(d: Dense, choice: I64, rows: I64, excess: F64, viol: npt.NDArray[np.bool_]) -> bool:
    """One vectorised round of repair moves, applied to `choice` in place; False when none is possible."""
    slack = np.where(viol, 0.0, -excess)
    delta = d.A - d.A[:, rows, choice][:, :, None]  # (k, n, cols)
    allowed = np.all(delta <= slack[:, None, None], axis=0) & d.valid
    freed = -(delta[viol] / excess[viol][:, None, None]).sum(axis=0)
    loss = d.obj[rows, choice][:, None] - d.obj
    ok = allowed & (freed > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, loss / np.where(ok, freed, 1.0), np.inf)
        # slack of satisfied constraints a move eats: breaks ties in favour of moves that eat none
        eaten = (np.maximum(delta[~viol], 0.0) / np.maximum(slack[~viol], 1e-300)[:, None, None]).sum(axis=0)
    col = np.lexsort((eaten, ratio), axis=1)[:, 0]
    best = ratio[rows, col]
    movable = np.flatnonzero(np.isfinite(best))
    if movable.size == 0:
        return False
    order = movable[np.lexsort((eaten[movable, col[movable]], best[movable]))]
    step = delta[:, order, col[order]]  # (k, moves)
    used = np.cumsum(step, axis=1)
    fits = np.all(used[~viol] <= slack[~viol][:, None], axis=0)
    stop = np.flatnonzero(~fits)
    upto = int(stop[0]) if stop.size else order.size
    upto = max(upto, 1)  # the first move fits on its own
    done = np.flatnonzero(np.all(-used[viol, :upto] >= excess[viol][:, None], axis=0))
    if done.size:
        upto = int(done[0]) + 1
    choice[order[:upto]] = col[order[:upto]]
    return True


def upgrade(
    d: Dense, choice: I64, deadline: float | None = None, max_rounds: int = 200, safe: bool = True
) -> I64:
    """Greedily raise the objective while every constraint keeps within its limit."""
    choice = choice.copy()
    rows = np.arange(d.n)
    limit = limits(d, safe)
    for _ in range(max_rounds):
        _, usage = totals(d, choice)
        slack = np.maximum(limit - usage, 0.0)
        delta = d.A - d.A[:, rows, choice][:, :, None]
        gain = d.obj - d.obj[rows, choice][:, None]
        fits = np.all(delta <= slack[:, None, None], axis=0) & (gain > 0) & d.valid
        if not fits.any():
            break
        weight = 1.0 / np.maximum(slack, 1e-300)
        price = np.tensordot(weight, np.maximum(delta, 0.0), axes=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(fits, np.where(price > 0, gain / price, np.inf), -np.inf)
        col = np.argmax(ratio, axis=1)
        cand = np.flatnonzero(fits[rows, col])
        # best ratio first; among free (price 0) upgrades, biggest gain first
        key = np.lexsort((-gain[cand, col[cand]], -ratio[cand, col[cand]]))
        order = cand[key]
        step = delta[:, order, col[order]]
        within = np.all(np.cumsum(step, axis=1) <= slack[:, None], axis=0)
        bad = np.flatnonzero(~within)
        upto = int(bad[0]) if bad.size else order.size
        upto = max(upto, 1)  # the first move always fits on its own
        choice[order[:upto]] = col[order[:upto]]
        if deadline is not None and time.perf_counter() > deadline:
            break
    return choice
