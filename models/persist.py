"""Save and load a fitted `DifficultyPredictor` as skops bytes, trusting only an explicit list of types.

Never pickle: `loads` first asks skops which types in the artifact are not trusted by default and refuses the
artifact (InvalidArgumentError naming them) unless every one of them is in `TRUSTED_TYPES`, the project's own
estimator and parameter classes plus the scikit-learn pieces they hold. Nothing is loaded with a blanket
`trusted=True`.
"""

from __future__ import annotations

import skops.io as sio

from models.predictor import DifficultyPredictor
from planner.errors import InvalidArgumentError

TRUSTED_TYPES: tuple[str, ...] = (
    "models.predictor.DifficultyPredictor",
    "models.features.QueryFeaturizer",
    "models.success.SuccessModel",
    "models.success.Calibrator",
    "models.success.CoreParams",
    "models.success.MFParams",
    "models.neighbours.NeighbourEase",
    "models.tokens.TokenModel",
    "models.strategies.CorrelationFit",
    "models.response.StrategyEvidence",
)
"""Types an artifact may hold beyond those skops trusts by default (numpy arrays, builtins, scikit-learn's
TfidfVectorizer / TruncatedSVD and friends)."""


def dumps(predictor: DifficultyPredictor) -> bytes:
    """The fitted predictor as skops bytes."""
    if not isinstance(predictor, DifficultyPredictor):
        raise InvalidArgumentError.for_field(
            "predictor", type(predictor).__name__, "not a DifficultyPredictor"
        )
    return bytes(sio.dumps(predictor))


def untrusted_types(data: bytes) -> list[str]:
    """Types in the artifact that neither skops' defaults nor `TRUSTED_TYPES` trust."""
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # not a zip / not a skops archive
        raise InvalidArgumentError.for_field(
            "artifact", f"{len(data)} bytes", f"not a skops archive: {exc}"
        ) from exc
    return [t for t in found if t not in TRUSTED_TYPES]


def loads(data: bytes) -> DifficultyPredictor:
    """Load a predictor saved by `dumps`; rejects artifacts holding any type outside the allowlist."""
    bad = untrusted_types(data)
    if bad:
        raise InvalidArgumentError.for_field("artifact", bad, "holds types outside the trusted allowlist")
    trusted = [t for t in sio.get_untrusted_types(data=data)]
    obj = sio.loads(data, trusted=trusted)
    if not isinstance(obj, DifficultyPredictor):
        raise InvalidArgumentError.for_field(
            "artifact", type(obj).__name__, "does not hold a DifficultyPredictor"
        )
    obj._compile()
    return obj
