"""Small scenarios shared by the simulator tests (seconds to simulate on the default catalog)."""

from __future__ import annotations

from typing import Any

from simulator.scenario import Scenario, scenario_from_dict

H100 = "H100-SXM5-80GB"
TIER = "llama-3.1-8b"


def small(**over: Any) -> Scenario:
    base: dict[str, Any] = {
        "name": "small",
        "seed": 3,
        "workload": {
            "kind": "poisson",
            "rate_per_s": 4.0,
            "duration_s": 300.0,
            "tasks": {"chat": 0.75, "hard": 0.25},
        },
        "slo": {"ttft_s": 2.0, "e2e_s": 60.0},
        "fleet": [{"target": H100, "count": 2}],
        "routes": [{"tier": TIER, "target": H100}],
    }
    base.update(over)
    return scenario_from_dict(base)


SMALL_TOML = """
name = "{name}"
replicates = 2
[workload]
kind = "poisson"
rate_per_s = 3.0
duration_s = 200.0
tasks = {{ chat = 0.8, reasoning = 0.2 }}
[slo]
e2e_s = 30.0
[[fleet]]
target = "H100-SXM5-80GB"
count = 1
[[routes]]
tier = "llama-3.1-8b"
target = "H100-SXM5-80GB"
[[routes]]
task = "reasoning"
tier = "llama-3.1-8b"
strategy = "{strategy}"
target = "H100-SXM5-80GB"
"""
