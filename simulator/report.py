"""Simulation reports: Markdown (and HTML) with PNG plots, plus the machine-readable JSON result.

`write_report(results, out_dir)` compares one or more scenarios side by side: a table of the headline
figures with their confidence intervals, spend by target / tier / tenant, the fleet's pools, and plots of
latency CDFs (TTFT, time between tokens, end-to-end), spend and energy per simulated hour, and a scenario
comparison. Files: ``report.md``, ``report.html`` (optional), ``result.json``, ``*.png``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from simulator.result import SimulationResult

HEADLINE = (
    ("requests", "requests", "{:,.0f}"),
    ("throughput_rps", "throughput (req/s)", "{:.2f}"),
    ("output_tokens_per_s", "output tokens/s", "{:,.0f}"),
    ("spend_usd", "spend (USD)", "{:,.2f}"),
    ("usd_per_1k_requests", "USD / 1k requests", "{:.3f}"),
    ("energy_kwh", "energy (kWh, facility)", "{:.2f}"),
    ("co2_kg", "CO2e (kg)", "{:.2f}"),
    ("slo_attainment", "SLO attainment", "{:.4f}"),
    ("expected_quality", "expected quality", "{:.3f}"),
    ("ttft_s.p50", "TTFT p50 (s)", "{:.3f}"),
    ("ttft_s.p95", "TTFT p95 (s)", "{:.3f}"),
    ("ttft_s.p99", "TTFT p99 (s)", "{:.3f}"),
    ("tbt_s.p50", "TBT p50 (s)", "{:.4f}"),
    ("tbt_s.p99", "TBT p99 (s)", "{:.4f}"),
    ("e2e_s.p50", "end-to-end p50 (s)", "{:.2f}"),
    ("e2e_s.p95", "end-to-end p95 (s)", "{:.2f}"),
    ("e2e_s.p99", "end-to-end p99 (s)", "{:.2f}"),
    ("rejected", "rejected", "{:,.0f}"),
)


def _cell(r: SimulationResult, key: str, fmt: str) -> str:
    m = r.metrics.get(key)
    if m is None or m["mean"] != m["mean"]:
        return "n/a"
    if r.replicates > 1 and m["hi"] > m["lo"]:
        return f"{fmt.format(m['mean'])} [{fmt.format(m['lo'])}, {fmt.format(m['hi'])}]"
    return fmt.format(m["mean"])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(results: Sequence[SimulationResult], plots: Sequence[str]) -> str:
    level = results[0].level if results else 0.95
    lines = ["# Simulation report", ""]
    for r in results:
        lines.append(f"- **{r.scenario}** ({r.replicates} replicates): {r.description or '(no description)'}")
    lines += ["", f"## Headline figures (mean [{level:.0%} interval over replicates])", ""]
    lines += _table(
        ["metric", *(r.scenario for r in results)],
        [[label, *(_cell(r, key, fmt) for r in results)] for key, label, fmt in HEADLINE],
    )
    groups = [f"spend_by_{k}_usd" for k in ("target", "tier", "tenant", "region")]
    groups += ["slo_attainment_by_tenant", "utilisation", "energy_kwh_by_region", "co2_kg_by_region"]
    for group in groups:
        names = sorted({k for r in results for k in r.breakdown.get(group, {})})
        if not names:
            continue
        lines += ["", f"## {group.replace('_', ' ')}", ""]
        rows = [[n, *(f"{r.breakdown.get(group, {}).get(n, 0.0):,.3f}" for r in results)] for n in names]
        lines += _table(["", *(r.scenario for r in results)], rows)
    lines += ["", "## Pools", ""]
    cols = ("tier", "target", "region", "replicas", "devices", "max_batch", "utilisation", "slot_occupancy")
    rows = [[r.scenario, *(_fmt(p[c]) for c in cols)] for r in results for p in r.pools]
    lines += _table(["scenario", *cols], rows)
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(results: Sequence[SimulationResult], out_dir: str | Path, html_too: bool = True) -> Path:
    """Write report.md (+ report.html), result.json and the PNG plots into `out_dir`; returns report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = [
        _plot_cdfs(results, out / "latency_cdf.png"),
        _plot_hourly(results, "spend_usd", "spend per hour (USD)", out / "spend_per_hour.png"),
        _plot_hourly(results, "energy_kwh", "energy per hour (kWh)", out / "energy_per_hour.png"),
        _plot_comparison(results, out / "comparison.png"),
    ]
    names = [p.name for p in plots]
    text = markdown(results, names)
    (out / "report.md").write_text(text)
    payload = {"scenarios": [r.to_dict() for r in results]}
    (out / "result.json").write_text(json.dumps(payload, indent=1, allow_nan=False))
    if html_too:
        (out / "report.html").write_text(_html(text))
    return out / "report.md"


def _plot_cdfs(results: Sequence[SimulationResult], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    titles = {"ttft_s": "TTFT", "tbt_s": "time between tokens", "e2e_s": "end-to-end"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        for r in results:
            h = r.histograms.get(key)
            if h is not None and h.n:
                x, f = h.cdf_points()
                ax.plot(x, f, label=r.scenario)
        ax.set_xscale("log")
        ax.set_xlabel("seconds (log)")
        ax.set_title(f"{title} CDF")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[-1].legend(fontsize=8)
    return _save(fig, path)


def _plot_hourly(results: Sequence[SimulationResult], key: str, label: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        series = r.hourly.get(key, [])
        ax.step(range(len(series)), series, where="post", label=r.scenario)
    ax.set_xlabel("simulated hour")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_comparison(results: Sequence[SimulationResult], path: Path) -> Path:
    keys: tuple[tuple[str, str], ...] = (
        ("spend_usd", "spend (USD)"),
        ("energy_kwh", "energy (kWh)"),
        ("co2_kg", "CO2e (kg)"),
        ("e2e_s.p99", "e2e p99 (s)"),
        ("slo_attainment", "SLO attainment"),
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.8))
    names = [r.scenario for r in results]
    for ax, (key, label) in zip(axes, keys, strict=True):
        means = [r.metrics.get(key, {}).get("mean", float("nan")) for r in results]
        lo = [m - r.metrics.get(key, {}).get("lo", m) for m, r in zip(means, results, strict=True)]
        hi = [r.metrics.get(key, {}).get("hi", m) - m for m, r in zip(means, results, strict=True)]
        ax.bar(
            range(len(names)),
            means,
            yerr=[lo, hi],
            capsize=4,
            color=[f"C{i % 10}" for i in range(len(names))],
        )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _html(markdown_text: str) -> str:
    """A plain HTML rendering of the report (headings, lists, tables, images), no extra dependency."""
    body: list[str] = []
    in_table = False
    for line in markdown_text.splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("| ") != in_table:
            body.append("<table border=1 cellpadding=3>" if not in_table else "</table>")
            in_table = not in_table
        if line.startswith("| "):
            cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|"))
            body.append(f"<tr>{cells}</tr>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : -1]
            body.append(f'<p><img src="{html.escape(src)}" style="max-width:100%"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:].replace('**', ''))}</li>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto} td{font-size:13px}"
    head = f"<head><meta charset='utf-8'><title>Simulation report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>\n" + "\n".join(body) + "\n</body></html>\n"
