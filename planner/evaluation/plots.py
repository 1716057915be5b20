"""Quality-vs-cost plot of an evaluation (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from planner.evaluation.harness import EvaluationReport
from planner.evaluation.metrics import envelope


def plot_quality_cost(report: EvaluationReport, path: str | Path) -> Path:
    """Routers as enveloped curves, single models and the oracle as points; log cost axis."""
    fig, ax = plt.subplots(figsize=(9, 6))
    for policy in report.policies:
        if policy.kind == "router":
            env = envelope(policy.curve())
            style = "-" if policy.realised else ":"
            label = policy.name if policy.realised else f"{policy.name} (simulated)"
            ax.plot(env.cost, env.quality, style, marker=".", label=label)
    singles = [p for p in report.policies if p.kind == "single"]
    ax.scatter([p.points[0].cost for p in singles], [p.points[0].quality for p in singles], c="grey", s=14)
    for p in singles:
        ax.annotate(p.name, (p.points[0].cost, p.points[0].quality), fontsize=6, alpha=0.7)
    oracle = report.policy("oracle").points[0]
    ax.scatter([oracle.cost], [oracle.quality], marker="*", s=120, c="gold", label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("realised cost per query (USD, log scale)")
    ax.set_ylabel("realised accuracy")
    ax.set_ylim(max(0.0, min(p.points[0].quality for p in singles) - 0.05), 1.0)
    ax.set_title(f"Quality vs cost, {report.n_test_queries} held-out queries ({report.forecaster})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out
