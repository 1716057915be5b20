"""A small catalog covering every price model, for the hardware / cost model tests."""

from __future__ import annotations

from planner.catalog import Catalog, parse_catalog

TOML = """
[[tiers]]
name = "llama-8b"
total_params_b = 8
active_params_b = 8
strategies = ["single", "vote5", "revise3"]
kv_bytes_per_token = 131072
[[tiers]]
name = "llama-70b"
total_params_b = 70
active_params_b = 70
strategies = ["single", "vote5", "revise3"]
[[tiers]]
name = "gpt-4o"
total_params_b = 200
active_params_b = 200
open_weights = false
provider = "openai"
strategies = ["single"]
[[strategies]]
name = "single"
[[strategies]]
name = "vote5"
kind = "majority_vote"
samples = 5
[[strategies]]
name = "revise3"
kind = "revision"
serial_steps = 3
[[targets]]
name = "h100"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
mem_bandwidth_gb_s = 3350
bf16_tflops = 989
fp8_tflops = 1979
power_w = 700
max_devices = 8
usd_per_hour = 4.25
[[targets]]
name = "jetson"
family = "edge"
price_model = "owned"
memory_gb = 64
mem_bandwidth_gb_s = 204.8
int8_tops = 275
power_w = 60
device_price_usd = 2000
[[targets]]
name = "openai"
family = "api"
price_model = "per_token"
provider = "openai"
tokens_per_s_per_user = 80
network_rtt_ms = 200
[targets.token_prices.gpt-4o]
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10
"""


def small_catalog() -> Catalog:
    return parse_catalog(TOML, "tests/simulator/hw_catalog.py")
