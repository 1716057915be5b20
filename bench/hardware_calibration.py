"""Hardware model against the ML.ENERGY H100 measurements: leave-one-model-out error and extrapolation.

Prints, for median inter-token latency (ITL) and energy per output token:
- leave-one-model-out (LOMO) median absolute % error of the calibrated model, overall and per held-out model,
  and leave-one-family-out (all checkpoints of one base model held out together, e.g. Qwen3-235B x4);
- in the same run, three baselines: the pure datasheet roofline (no fitted efficiencies, TDP power), the
  uncalibrated hand priors, and a per-batch-size mean (geometric mean of the training models' rows in the
  same power-of-two batch bucket and GPU count);
- extrapolation: fit on batch <= 64, predict larger batches; fit on 1-GPU rows, predict 2/4/8 GPUs; with the
  extrapolation report of the calibration fitted on the subset (which inputs lie outside its range).

Usage: python bench/hardware_calibration.py [--csv PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibrate import (
    H100,
    Measurements,
    abs_pct_errors,
    fit,
    leave_one_out,
    load_measurements,
)
from simulator.calibration import Calibration
from simulator.hardware import DeploymentConfig, Efficiency, ModelSpec

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "hardware" / "mlenergy_h100.csv"

ROOFLINE = Efficiency(
    bw_eff=1.0,
    compute_eff=1.0,
    overlap=50.0,
    step_overhead_s=0.0,
    per_seq_overhead_s=0.0,
    tp_overhead_s=0.0,
    moe_touch=1.0,
    overhead_size_exp=0.0,
    fp8_eff=1.0,
    int4_eff=1.0,
    idle_frac=1.0,
    prefill_eff=1.0,
)
"""Datasheet roofline: peak bandwidth and compute, max(memory, compute), no overheads, power at TDP."""


def family(model_id: str) -> str:
    name = model_id.split("/")[-1]
    name = re.sub(r"-(FP8|Instruct|Thinking|it|2507)\b", "", name)
    return re.sub(r"-(FP8|Instruct|Thinking|it|2507)\b", "", name)


def _fixed_lomo(eff: Efficiency, rows: Measurements) -> dict[str, float]:
    """Errors of a parameter set that is not fitted (nothing to hold out)."""
    itl, en = abs_pct_errors(eff, rows)
    return {"itl_mape": float(np.median(itl)), "energy_mape": float(np.median(en))}


def _bucket_mean_lomo(rows: Measurements) -> dict[str, float]:
    """Per-batch-size mean: predict a held-out model's row by the training rows of its batch bucket."""
    bucket = np.round(np.log2(rows.batch)).astype(int)
    itl_err, en_err = [], []
    for m in sorted(set(rows.model_id.tolist())):
        held = rows.model_id == m
        for i in np.where(held)[0]:
            same = ~held & (bucket == bucket[i]) & (rows.n == rows.n[i])
            if not same.any():
                same = ~held & (bucket == bucket[i])
            if not same.any():
                same = ~held
            itl_err.append(abs(np.exp(np.log(rows.itl_s[same]).mean()) / rows.itl_s[i] - 1))
            en_err.append(abs(np.exp(np.log(rows.energy_j[same]).mean()) / rows.energy_j[i] - 1))
    return {"itl_mape": float(np.median(itl_err)), "energy_mape": float(np.median(en_err))}


def _split_check(rows: Measurements, train: np.ndarray, label: str) -> dict[str, Any]:
    """Fit on `train` rows, predict the rest; collect the extrapolation notes of each predicted row."""
    sub = rows.subset(train)
    eff = fit(sub)
    cal = Calibration(eff, sub.fit_range(), f"bench subset: {label}")
    test = rows.subset(~train)
    itl, en = abs_pct_errors(eff, test)
    notes: Counter[str] = Counter()
    for i in range(len(test)):
        model = ModelSpec(
            str(test.model_id[i]),
            float(test.total_b[i]),
            float(test.active_b[i]),
            str(test.precision[i]),
            float(test.kv_bytes[i]),
        )
        config = DeploymentConfig(model, H100, int(test.n[i]), float(test.batch[i]), float(test.context[i]))
        notes.update(cal.extrapolated_inputs(config))
    roof_itl, roof_en = abs_pct_errors(ROOFLINE, test)
    return {
        "check": label,
        "train_rows": int(train.sum()),
        "test_rows": int((~train).sum()),
        "itl_mape": float(np.median(itl)),
        "energy_mape": float(np.median(en)),
        "roofline_itl_mape": float(np.median(roof_itl)),
        "roofline_energy_mape": float(np.median(roof_en)),
        "test_rows_flagged_by_input": dict(sorted(notes.items())),
        "fitted_range": cal.fit_range.to_dict() if cal.fit_range else {},
    }


def _largest_gpu_count_rows(rows: Measurements) -> np.ndarray:
    """Rows at the largest GPU count of every (model, task) measured at two or more GPU counts."""
    out = np.zeros(len(rows), dtype=bool)
    for m in set(rows.model_id.tolist()):
        k = rows.model_id == m
        counts = set(rows.n[k].tolist())
        if len(counts) > 1:
            out |= k & (rows.n == max(counts))
    return out


def run(csv: Path) -> dict[str, Any]:
    rows = load_measurements(csv)
    t0 = time.perf_counter()
    lomo = leave_one_out(rows)
    lomo_s = time.perf_counter() - t0
    lofo = leave_one_out(rows, [family(m) for m in rows.model_id])
    return {
        "data": str(csv.name),
        "rows": len(rows),
        "models": len(set(rows.model_id.tolist())),
        "lomo": {
            "itl_mape": lomo.itl_median_ape,
            "energy_mape": lomo.energy_median_ape,
            "per_model": {h.group: [h.rows, h.itl_mape, h.energy_mape] for h in lomo.per_group},
            "seconds": lomo_s,
        },
        "leave_one_family_out": {"itl_mape": lofo.itl_median_ape, "energy_mape": lofo.energy_median_ape},
        "baselines": {
            "datasheet_roofline": _fixed_lomo(ROOFLINE, rows),
            "hand_priors_uncalibrated": _fixed_lomo(Efficiency(), rows),
            "per_batch_size_mean_lomo": _bucket_mean_lomo(rows),
        },
        "extrapolation": [
            _split_check(rows, rows.batch <= 64, "fit batch <= 64, predict batch > 64"),
            _split_check(
                rows, ~_largest_gpu_count_rows(rows), "hold out the largest GPU count of multi-count models"
            ),
            _split_check(rows, rows.n == 1, "fit 1-GPU rows only, predict 2/4/8 GPUs"),
        ],
    }


def _print(r: dict[str, Any]) -> None:
    pct = "{:5.1f}%".format
    print(f"ML.ENERGY H100: {r['rows']} rows, {r['models']} models")
    lo = r["lomo"]
    print(
        f"LOMO calibrated        ITL {pct(100 * lo['itl_mape'])}  energy/token {pct(100 * lo['energy_mape'])}"
    )
    lf = r["leave_one_family_out"]
    print(
        f"leave-one-family-out   ITL {pct(100 * lf['itl_mape'])}  energy/token {pct(100 * lf['energy_mape'])}"
    )
    for name, b in r["baselines"].items():
        print(
            f"baseline {name:26s} ITL {pct(100 * b['itl_mape'])}  energy/token {pct(100 * b['energy_mape'])}"
        )
    print("per held-out model (rows, ITL, energy):")
    for m, (n, itl, en) in lo["per_model"].items():
        print(f"  {m:52s} {n:3d} {pct(100 * itl)} {pct(100 * en)}")
    for x in r["extrapolation"]:
        print(
            f"{x['check']}: {x['test_rows']} rows  ITL {pct(100 * x['itl_mape'])}  energy "
            f"{pct(100 * x['energy_mape'])}  (roofline {pct(100 * x['roofline_itl_mape'])} / "
            f"{pct(100 * x['roofline_energy_mape'])}); flagged: {x['test_rows_flagged_by_input']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.csv)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)


if __name__ == "__main__":
    main()
