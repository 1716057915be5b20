"""The calibrated efficiency parameters of the hardware model, their fitted range, and the packaged default.

`Calibration` is what `simulator.calibrate` produces from measured serving rows and what `CostModel` consumes.
It remembers the range of inputs it was fitted on, so `extrapolation_report(config)` can say which inputs of a
prediction lie outside it (batch size, device count, model size, precision, device type).
The packaged default lives in `simulator/data/h100_calibration.json`, written by
`python -m simulator.calibrate`; loading it needs neither scipy nor the measurement file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from planner.errors import FieldViolation, InvalidArgumentError
from simulator.hardware import DeploymentConfig, DeviceSpec, Efficiency

PACKAGED = "h100_calibration.json"

H100 = DeviceSpec("H100-SXM5-80GB", 80.0, 3350.0, 989.0, 1979.0, 1979.0, 700.0)
"""The measured device's datasheet figures (shared/data/hardware/hardware_specs.csv; NVIDIA datasheet)."""


@dataclass(frozen=True)
class FitRange:
    """Inputs the calibration saw: closed intervals and sets."""

    batch: tuple[float, float] = (1.0, 1.0)
    n_devices: tuple[int, ...] = (1,)
    total_params_b: tuple[float, float] = (0.0, 0.0)
    active_params_b: tuple[float, float] = (0.0, 0.0)
    context_tokens: tuple[float, float] = (0.0, 0.0)
    precisions: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitRange:
        return cls(
            batch=_pair(data["batch"]),
            n_devices=tuple(int(x) for x in data["n_devices"]),
            total_params_b=_pair(data["total_params_b"]),
            active_params_b=_pair(data["active_params_b"]),
            context_tokens=_pair(data["context_tokens"]),
            precisions=tuple(str(x) for x in data["precisions"]),
            devices=tuple(str(x) for x in data["devices"]),
        )


def _pair(v: Any) -> tuple[float, float]:
    return float(v[0]), float(v[1])


def _outside(name: str, value: float, lo: float, hi: float) -> str | None:
    if lo <= value <= hi:
        return None
    side = "above" if value > hi else "below"
    return f"{name} {value:g} is {side} the fitted range [{lo:g}, {hi:g}]"


@dataclass(frozen=True)
class Calibration:
    """Efficiency parameters plus provenance: where they come from and what range they were fitted on."""

    efficiency: Efficiency = field(default_factory=Efficiency)
    fit_range: FitRange | None = None
    source: str = "hand priors (uncalibrated)"
    metrics: dict[str, float] = field(default_factory=dict)

    def extrapolation_report(self, config: DeploymentConfig) -> tuple[str, ...]:
        """Every input of `config` outside the fitted range, in words; empty when all are inside."""
        return tuple(message for _, message in self.extrapolations(config))

    def extrapolated_inputs(self, config: DeploymentConfig) -> tuple[str, ...]:
        """Names of the inputs of `config` outside the fitted range (batch_size, n_devices, ...)."""
        return tuple(name for name, _ in self.extrapolations(config))

    def extrapolations(self, config: DeploymentConfig) -> tuple[tuple[str, str], ...]:
        """(input name, explanation) for every input of `config` outside the fitted range."""
        r = self.fit_range
        if r is None:
            return (
                (
                    "efficiency",
                    "uncalibrated: efficiency factors are hand priors, every prediction extrapolates",
                ),
            )
        m = config.model
        out = [
            ("batch_size", _outside("batch size", config.batch_size, *r.batch)),
            ("total_params_b", _outside("total params (B)", m.total_params_b, *r.total_params_b)),
            ("active_params_b", _outside("active params (B)", m.active_params_b, *r.active_params_b)),
            ("context_tokens", _outside("context tokens", config.context_tokens, *r.context_tokens)),
        ]
        if config.n_devices not in r.n_devices:
            out.append(
                (
                    "n_devices",
                    f"device count {config.n_devices} was not measured (fitted on {list(r.n_devices)})",
                )
            )
        if m.precision not in r.precisions:
            out.append(
                ("precision", f"precision {m.precision!r} was not measured (fitted on {list(r.precisions)})")
            )
        if config.device.name not in r.devices:
            out.append(
                (
                    "device",
                    f"device {config.device.name!r} was not measured (fitted on {list(r.devices)}); "
                    "its datasheet bandwidth/compute/power are used with the fitted efficiencies",
                )
            )
        return tuple((name, msg) for name, msg in out if msg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "efficiency": self.efficiency.as_dict(),
            "fit_range": None if self.fit_range is None else self.fit_range.to_dict(),
            "source": self.source,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        try:
            unknown = set(data["efficiency"]) - set(Efficiency.names())
            if unknown:
                raise KeyError(f"unknown efficiency parameters {sorted(unknown)}")
            eff = Efficiency(**{k: float(v) for k, v in data["efficiency"].items()})
            fr = data.get("fit_range")
            return cls(
                efficiency=eff,
                fit_range=None if fr is None else FitRange.from_dict(fr),
                source=str(data.get("source", "")),
                metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                "bad calibration", [FieldViolation("calibration", None, str(exc))]
            ) from None


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The packaged H100 calibration, or one written to `path` by `python -m simulator.calibrate`."""
    if path is None:
        ref = resources.files("simulator").joinpath("data", PACKAGED)
        if not ref.is_file():
            return Calibration()
        text = ref.read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError.for_field("path", str(path), str(exc)) from None
    return Calibration.from_dict(json.loads(text))
