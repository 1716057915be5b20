"""Router quality-vs-cost metrics: APGR and CPT as RouteLLM defines them, AIQ as RouterBench defines it.

A router's operating points are (mean cost per query, mean quality) pairs from a sweep of its knob (budget,
threshold, lambda). Both papers read a router through the best quality it reaches at a given cost:

- PGR(c) = (q(c) - q_weak) / (q_strong - q_weak): the share of the weak->strong performance gap recovered.
  APGR (RouteLLM, Ong et al. 2024) is the average PGR over the cost range from the weak to the strong model
  (RouteLLM sweeps the share of calls to the strong model, i.e. a cost range normalised to [0, 1]).
  CPT(x%) is the least cost at which PGR reaches x%; we report it as a fraction of the strong model's cost
  (RouteLLM's "% calls to the strong model" when the two costs are the only ones involved).
- AIQ (RouterBench, Hu et al. 2024) is the area under the non-decreasing convex hull of the router's points,
  divided by the width of a common cost range [c_min, c_max].

`envelope` turns points into that non-decreasing concave curve (points between two operating points are
reached by mixing the two policies at random, so the hull is achievable); below the cheapest point quality
is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Operating points of one policy, sorted by cost."""

    cost: np.ndarray
    quality: np.ndarray

    @classmethod
    def of(cls, cost: np.ndarray | list[float], quality: np.ndarray | list[float]) -> Curve:
        c = np.asarray(cost, float)
        q = np.asarray(quality, float)
        if c.shape != q.shape or c.ndim != 1 or len(c) == 0:
            raise ValueError(f"cost {c.shape} and quality {q.shape} must be equal non-empty 1-d arrays")
        order = np.lexsort((-q, c))
        return cls(c[order], q[order])


def envelope(curve: Curve) -> Curve:
    """The non-decreasing upper concave hull of a policy's points (its achievable frontier)."""
    pts: list[tuple[float, float]] = []
    for c, q in zip(curve.cost, curve.quality, strict=True):
        if pts and q <= pts[-1][1]:
            continue  # dominated: costs more, delivers no more
        while len(pts) >= 2:
            (c1, q1), (c2, q2) = pts[-2], pts[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                pts.pop()  # the middle point lies on or below the chord: not on the hull
            else:
                break
        if pts and c == pts[-1][0]:
            pts.pop()
        pts.append((float(c), float(q)))
    arr = np.array(pts)
    return Curve(arr[:, 0], arr[:, 1])


def quality_at(curve: Curve, cost: np.ndarray | float) -> np.ndarray:
    """Best quality the (enveloped) policy reaches at mean cost <= `cost` (0 below its cheapest point)."""
    env = envelope(curve)
    c = np.asarray(cost, float)
    q = np.interp(c, env.cost, env.quality, left=0.0, right=float(env.quality[-1]))
    return np.where(c < env.cost[0], 0.0, q)


def cost_to_reach(curve: Curve, quality: float) -> float:
    """Least mean cost at which the enveloped policy reaches `quality` (inf if it never does)."""
    env = envelope(curve)
    if quality <= env.quality[0]:
        return float(env.cost[0])
    if quality > env.quality[-1] + 1e-12:
        return float("inf")
    return float(np.interp(quality, env.quality, env.cost))


def _grid(lo: float, hi: float, n: int = 2001) -> np.ndarray:
    return np.linspace(lo, hi, n)


def apgr(curve: Curve, weak: tuple[float, float], strong: tuple[float, float]) -> float:
    """Average performance gap recovered over the cost range [weak cost, strong cost] (RouteLLM)."""
    (cw, qw), (cs, qs) = weak, strong
    if not (cs > cw and qs > qw):
        raise ValueError(f"strong {strong} must cost and score more than weak {weak}")
    grid = _grid(cw, cs)
    pgr = (quality_at(curve, grid) - qw) / (qs - qw)
    return float(np.trapezoid(pgr, grid) / (cs - cw))


def cpt(curve: Curve, weak: tuple[float, float], strong: tuple[float, float], pct: float) -> float:
    """Cost (as a fraction of the strong model's) needed to recover `pct`% of the weak->strong gap."""
    (_, qw), (cs, qs) = weak, strong
    return cost_to_reach(curve, qw + pct / 100.0 * (qs - qw)) / cs


def aiq(curve: Curve, c_min: float, c_max: float) -> float:
    """Average quality over [c_min, c_max] of the non-decreasing convex hull (RouterBench's AIQ)."""
    if not c_max > c_min:
        raise ValueError(f"c_max {c_max} must exceed c_min {c_min}")
    grid = _grid(c_min, c_max)
    return float(np.trapezoid(quality_at(curve, grid), grid) / (c_max - c_min))
