"""Reliability diagram and per-tier AUC chart of an evaluation report, as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from models.report import Report


def reliability_png(report: Report, path: str | Path, title: str = "") -> Path:
    """Write the PNG: left, reliability curves (forecast vs observed, marker area ~ bin count) of every
    forecaster; right, AUC per tier of every forecaster (tiers sorted by the first forecaster's AUC)."""
    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.6]})
    left.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for ev in report.evaluations:
        rel = ev.reliability
        count = np.asarray(rel.count, dtype=float)
        used = count > 0
        mean_p, observed = np.asarray(rel.mean_p)[used], np.asarray(rel.observed)[used]
        left.plot(mean_p, observed, marker="o", lw=1.2, label=f"{ev.name} (ECE {ev.pooled.ece:.3f})")
        left.scatter(mean_p, observed, s=8 + 200 * count[used] / count.sum(), alpha=0.3)
    left.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast P(correct)", ylabel="observed frequency")
    left.set_title("Reliability (held-out queries, all tiers)")
    left.legend(fontsize=8, loc="upper left")
    first = report.evaluations[0]
    tiers = sorted(first.per_tier, key=lambda t: first.per_tier[t].auc or 0.5)
    width = 0.8 / len(report.evaluations)
    for i, ev in enumerate(report.evaluations):
        aucs = [ev.per_tier[t].auc if t in ev.per_tier and ev.per_tier[t].auc else np.nan for t in tiers]
        label = f"{ev.name} (mean {ev.mean_tier_auc:.3f})"
        right.bar(np.arange(len(tiers)) + i * width, aucs, width, label=label)
    right.axhline(0.5, color="grey", lw=1, ls="--")
    right.set_xticks(np.arange(len(tiers)) + 0.4 - width / 2, tiers, rotation=90, fontsize=6)
    right.set(ylim=(0.4, 0.9), ylabel="AUC within tier")
    right.set_title("Per-tier AUC")
    right.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
