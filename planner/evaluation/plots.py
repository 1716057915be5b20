"""Quality-vs-cost plot of an evaluation (PNG, matplotlib's Agg backend: no display needed).

Two panels share the legend: the whole range, and a zoom on the top (within 6 points of the best single
model), where the planner, the routers and the best single models separate. Simulated curves are dotted.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from planner.evaluation.harness import EvaluationReport
from planner.evaluation.metrics import envelope


def _panel(ax: Axes, report: EvaluationReport, y_low: float) -> None:
    for policy in report.policies:
        if policy.kind == "router":
            env = envelope(policy.curve())
            style = "-" if policy.realised else ":"
            label = policy.name if policy.realised else f"{policy.name} (simulated)"
            ax.plot(env.cost, env.quality, style, marker=".", markersize=3, label=label)
    singles = [p for p in report.policies if p.kind == "single"]
    ax.scatter([p.points[0].cost for p in singles], [p.points[0].quality for p in singles], c="grey", s=12)
    for p in singles:
        if p.points[0].quality >= y_low:
            ax.annotate(p.name, (p.points[0].cost, p.points[0].quality), fontsize=5, alpha=0.7)
    oracle = report.policy("oracle").points[0]
    ax.scatter([oracle.cost], [oracle.quality], marker="*", s=100, c="gold", label="oracle")
    if any(p.name == "best_single_ex_ante" for p in report.policies):
        ea = report.policy("best_single_ex_ante").points[0]
        ax.scatter(
            [ea.cost], [ea.quality], marker="D", s=30, c="black", label="best single (ex ante, per fold)"
        )
    ax.set_xscale("log")
    ax.set_xlabel("realised cost per query (USD, log scale)")
    ax.set_ylim(y_low, min(1.0, oracle.quality + 0.01))
    ax.grid(alpha=0.3)


def plot_quality_cost(report: EvaluationReport, path: str | Path, dpi: int = 120) -> Path:
    """Routers as enveloped curves, single models and the oracle as points; log cost axis."""
    fig, (full, top) = plt.subplots(1, 2, figsize=(13, 5.5))
    singles = [p.points[0].quality for p in report.policies if p.kind == "single"]
    _panel(full, report, max(0.0, min(singles) - 0.05))
    _panel(top, report, max(0.0, max(singles) - 0.06))
    full.set_ylabel("realised accuracy (simulated where dotted)")
    full.set_title(f"{report.n_test_queries} held-out queries, {report.forecaster}", fontsize=9)
    top.set_title("zoom: top of the range", fontsize=9)
    top.legend(loc="lower right", fontsize=7)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out
