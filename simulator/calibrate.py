"""Fit the hardware model's efficiency factors to measured serving rows and validate leave-one-model-out.

Input: the ML.ENERGY H100 measurements (`../shared/data/hardware/mlenergy_h100.csv`: per model x batch x
GPU count, median inter-token latency, energy per output token, power). Parameter counts and weight precision
come from the file; the KV-cache bytes per token of each measured architecture from its public `config.json`
(`ARCHITECTURES`); the mean context held during decode is the task's typical prompt plus half the measured
mean output (`TASK_PROMPT_TOKENS`, an assumption: the file gives output lengths only). Measured energy per
output token includes prefill, so the prediction adds prefill energy x prompt / output.

The fit: `scipy.optimize.least_squares` (soft-L1 loss, so one odd model does not drag the rest) on log
residuals of ITL, energy per token and (at half weight) power, over the log of each efficiency factor within
physical bounds. Leave-one-model-out (LOMO): fit on all model ids but one, predict the held-out one's rows,
report median absolute % errors per model and overall.

Run `python -m simulator.calibrate [--csv PATH] [--out PATH]` to rewrite the packaged calibration JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import least_squares

from planner.catalog import BYTES_PER_PARAM
from planner.errors import FieldViolation, InvalidArgumentError
from simulator.calibration import H100, PACKAGED, Calibration, FitRange
from simulator.hardware import DecodeStep, Efficiency, decode_physics, prefill_physics

FloatArray = npt.NDArray[np.float64]


PRECISIONS = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "fp8": "fp8",
    "mxfp4": "int4",
    "int4": "int4",
    "int8": "int8",
}
"""Measured weight precision -> catalog precision (mxfp4 = 4-bit weights de-quantised to bf16 matmuls)."""

# KV-cache bytes per token (16-bit cache) = attention layers x KV heads x head dim x 2 (K and V) x 2 bytes,
# from each model's public config.json. Hybrid Mamba models have few attention layers; gpt-oss alternates
# full and 128-token sliding-window layers (only the full ones counted).
ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "Qwen/Qwen3-8B": (36, 8, 128),
    "Qwen/Qwen3-14B": (40, 8, 128),
    "Qwen/Qwen3-32B": (64, 8, 128),
    "Qwen/Qwen3-30B-A3B": (48, 4, 128),
    "Qwen/Qwen3-Coder-30B-A3B": (48, 4, 128),
    "Qwen/Qwen3-235B-A22B": (94, 4, 128),
    "google/gemma-3-12b": (48, 8, 256),
    "google/gemma-3-27b": (62, 16, 128),
    "meta-llama/Llama-3.1-8B": (32, 8, 128),
    "meta-llama/Llama-3.1-70B": (80, 8, 128),
    "meta-llama/Llama-3.3-70B": (80, 8, 128),
    "meta-llama/Llama-3.1-405B": (126, 8, 128),
    "meta-llama/Llama-4-Scout": (48, 8, 128),
    "meta-llama/Llama-4-Maverick": (48, 8, 128),
    "nvidia/NVIDIA-Nemotron-Nano-12B-v2": (6, 8, 128),
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": (4, 8, 128),
    "openai/gpt-oss-120b": (18, 8, 64),
    "openai/gpt-oss-20b": (12, 8, 64),
}

TASK_PROMPT_TOKENS = {"lm-arena-chat": 150.0, "gpqa": 200.0, "sourcegraph-fim": 1500.0}
DEFAULT_PROMPT_TOKENS = 500.0

FITTED: dict[str, tuple[float, float]] = {
    "bw_eff": (0.3, 1.0),
    "compute_eff": (0.05, 1.0),
    "overlap": (1.0, 8.0),
    "step_overhead_s": (1e-4, 0.03),
    "per_seq_overhead_s": (1e-7, 5e-4),
    "tp_overhead_s": (1e-5, 0.02),
    "moe_touch": (0.05, 4.0),
    "overhead_size_exp": (0.01, 1.0),
    "fp8_eff": (0.2, 2.0),
    "int4_eff": (0.2, 2.0),
    "prefill_eff": (0.1, 1.0),
    "idle_frac": (0.05, 0.7),
    "power_mem_weight": (0.05, 3.0),
    "power_compute_weight": (0.05, 3.0),
    "power_exp": (0.2, 3.0),
}
"""Fitted efficiency factors and their physical bounds."""

POWER_WEIGHT = 0.5
"""Weight of the measured-power residual beside ITL and energy (regularises the power split)."""

PRIOR_WEIGHT = 0.3
"""Weak pull of each log-parameter towards the hand prior (`Efficiency()` defaults): keeps factors the rows
cannot identify (e.g. tensor-parallel overhead when fitting on 1-GPU rows only) at their prior."""


def kv_bytes_per_token(model_id: str) -> float:
    for prefix, (layers, heads, dim) in ARCHITECTURES.items():
        if model_id.startswith(prefix):
            return float(layers * heads * dim * 2 * 2)
    raise InvalidArgumentError.for_field(
        "model_id", model_id, f"no architecture known; known: {sorted(ARCHITECTURES)}"
    )


@dataclass(frozen=True)
class Measurements:
    """Measured rows as aligned arrays (one entry per serving configuration)."""

    model_id: npt.NDArray[np.str_]
    task: npt.NDArray[np.str_]
    precision: npt.NDArray[np.str_]
    total_b: FloatArray
    active_b: FloatArray
    bytes_per_param: FloatArray
    kv_bytes: FloatArray
    peak_tflops: FloatArray
    n: FloatArray
    batch: FloatArray
    context: FloatArray
    prompt: FloatArray
    output_len: FloatArray
    itl_s: FloatArray
    energy_j: FloatArray
    power_w: FloatArray

    def __len__(self) -> int:
        return len(self.batch)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Measurements:
        return Measurements(**{k: v[mask] for k, v in self.__dict__.items()})

    def fit_range(self) -> FitRange:
        return FitRange(
            batch=(float(self.batch.min()), float(self.batch.max())),
            n_devices=tuple(sorted({int(x) for x in self.n})),
            total_params_b=(float(self.total_b.min()), float(self.total_b.max())),
            active_params_b=(float(self.active_b.min()), float(self.active_b.max())),
            context_tokens=(float(self.context.min()), float(self.context.max())),
            precisions=tuple(sorted(set(self.precision.tolist()))),
            devices=(H100.name,),
        )


def measurements_from_frame(df: pd.DataFrame) -> Measurements:
    """Arrays from an ML.ENERGY-format frame (columns as in mlenergy_h100.csv)."""
    bad = sorted(set(df["weight_precision"]) - set(PRECISIONS))
    if bad:
        raise InvalidArgumentError(
            "unknown weight precision", [FieldViolation("weight_precision", bad, "unknown")]
        )
    prec = df["weight_precision"].map(PRECISIONS).to_numpy(dtype=str)
    prompt = df["task"].map(TASK_PROMPT_TOKENS).fillna(DEFAULT_PROMPT_TOKENS).to_numpy(dtype=float)
    peak = [H100.peak_flops(p) / 1e12 for p in prec]
    return Measurements(
        model_id=df["model_id"].to_numpy(dtype=str),
        task=df["task"].to_numpy(dtype=str),
        precision=prec,
        total_b=df["total_params_b"].to_numpy(dtype=float),
        active_b=df["active_params_b"].to_numpy(dtype=float),
        bytes_per_param=np.array([BYTES_PER_PARAM[p] for p in prec]),
        kv_bytes=np.array([kv_bytes_per_token(m) for m in df["model_id"]]),
        peak_tflops=np.array(peak, dtype=float),
        n=df["num_gpus"].to_numpy(dtype=float),
        batch=df["avg_batch_size"].to_numpy(dtype=float),
        context=prompt + df["avg_output_len"].to_numpy(dtype=float) / 2.0,
        prompt=prompt,
        output_len=df["avg_output_len"].to_numpy(dtype=float),
        itl_s=df["median_itl_ms"].to_numpy(dtype=float) / 1000.0,
        energy_j=df["energy_per_token_joules"].to_numpy(dtype=float),
        power_w=df["avg_power_watts"].to_numpy(dtype=float),
    )


def load_measurements(path: str | Path) -> Measurements:
    return measurements_from_frame(pd.read_csv(path))


def predict(eff: Efficiency, rows: Measurements) -> DecodeStep:
    """The hardware model's decode step for every measured configuration."""
    return decode_physics(
        eff,
        total_b=rows.total_b,
        active_b=rows.active_b,
        bytes_per_param=rows.bytes_per_param,
        kv_bytes_per_token=rows.kv_bytes,
        bandwidth_gb_s=H100.bandwidth_gb_s,
        peak_tflops=rows.peak_tflops,
        board_w=H100.board_power_w,
        n=rows.n,
        batch=rows.batch,
        context=rows.context,
    )


def predict_energy_per_output_token(eff: Efficiency, rows: Measurements, step: DecodeStep) -> FloatArray:
    """Measured energy per output token includes prefill: decode energy + prefill energy x prompt / output."""
    _, _, j_in = prefill_physics(
        eff, active_b=rows.active_b, peak_tflops=rows.peak_tflops, board_w=H100.board_power_w, n=rows.n
    )
    return np.asarray(step.energy_per_token_j + j_in * rows.prompt / rows.output_len, dtype=float)


def _efficiency(theta: FloatArray, base: Efficiency) -> Efficiency:
    return base.replace(**{k: float(np.exp(t)) for k, t in zip(FITTED, theta, strict=True)})


def _residuals(theta: FloatArray, rows: Measurements, base: Efficiency) -> FloatArray:
    eff = _efficiency(theta, base)
    step = predict(eff, rows)
    r_itl = np.log(step.step_s / rows.itl_s)
    r_energy = np.log(predict_energy_per_output_token(eff, rows, step) / rows.energy_j)
    r_power = POWER_WEIGHT * np.log(step.power_w / rows.power_w)
    r_prior = PRIOR_WEIGHT * (theta - np.log([getattr(base, k) for k in FITTED]))
    return np.asarray(np.concatenate([r_itl, r_energy, r_power, r_prior]), dtype=float)


def fit(rows: Measurements, base: Efficiency | None = None) -> Efficiency:
    """Least-squares fit (log space) of the `FITTED` factors; others keep `base`'s values."""
    if len(rows) < len(FITTED):
        raise InvalidArgumentError.for_field("rows", len(rows), f"need at least {len(FITTED)} measured rows")
    base = base or Efficiency()
    lo = np.log([b[0] for b in FITTED.values()])
    hi = np.log([b[1] for b in FITTED.values()])
    x0 = np.clip(np.log([getattr(base, k) for k in FITTED]), lo + 1e-6, hi - 1e-6)
    res = least_squares(
        _residuals,
        x0,
        bounds=(lo, hi),
        args=(rows, base),
        method="trf",
        x_scale="jac",
        loss="soft_l1",
        f_scale=0.1,
    )
    return _efficiency(res.x, base)


def abs_pct_errors(eff: Efficiency, rows: Measurements) -> tuple[FloatArray, FloatArray]:
    """|predicted / measured - 1| of ITL and of energy per token, per row."""
    step = predict(eff, rows)
    energy = predict_energy_per_output_token(eff, rows, step)
    return np.abs(step.step_s / rows.itl_s - 1.0), np.abs(energy / rows.energy_j - 1.0)


@dataclass(frozen=True)
class HeldOut:
    group: str
    rows: int
    itl_mape: float
    energy_mape: float


@dataclass(frozen=True)
class Validation:
    """Median absolute % errors on held-out rows, overall (pooled rows) and per held-out group."""

    itl_median_ape: float
    energy_median_ape: float
    per_group: tuple[HeldOut, ...]


def group_of(model_id: str) -> str:
    """The model id itself (leave-one-model-out holds out one measured checkpoint at a time)."""
    return model_id


def leave_one_out(
    rows: Measurements, groups: Sequence[str] | None = None, base: Efficiency | None = None
) -> Validation:
    """Fit on all groups but one, predict the held-out group; `groups` default to the model ids."""
    labels = np.asarray(groups if groups is not None else [group_of(m) for m in rows.model_id])
    itl_all, en_all, per = [], [], []
    for g in sorted(set(labels.tolist())):
        held = labels == g
        eff = fit(rows.subset(~held), base)
        itl, en = abs_pct_errors(eff, rows.subset(held))
        itl_all.append(itl)
        en_all.append(en)
        per.append(HeldOut(g, int(held.sum()), float(np.median(itl)), float(np.median(en))))
    return Validation(
        float(np.median(np.concatenate(itl_all))), float(np.median(np.concatenate(en_all))), tuple(per)
    )


def calibrate(rows: Measurements, source: str, validate: bool = True) -> Calibration:
    """Fit on every row; attach in-sample and (optionally) LOMO errors and the fitted input range."""
    eff = fit(rows)
    itl, en = abs_pct_errors(eff, rows)
    metrics = {"rows": float(len(rows)), "fit_itl_median_ape": float(np.median(itl))}
    metrics["fit_energy_median_ape"] = float(np.median(en))
    if validate:
        v = leave_one_out(rows)
        metrics["lomo_itl_median_ape"] = v.itl_median_ape
        metrics["lomo_energy_median_ape"] = v.energy_median_ape
    return Calibration(eff, rows.fit_range(), source, metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", default=str(Path(__file__).resolve().parents[2] / "shared/data/hardware/mlenergy_h100.csv")
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data" / PACKAGED))
    args = parser.parse_args(argv)
    rows = load_measurements(args.csv)
    cal = calibrate(
        rows, "ML.ENERGY leaderboard H100 measurements (mlenergy_h100.csv), fitted by simulator.calibrate"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cal.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(cal.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
