"""skops persistence with an explicit allowlist: round trip, and refusal of artifacts holding other types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from models import persist
from models.data import queries_from_frame
from models.predictor import DifficultyPredictor
from planner.errors import InvalidArgumentError


class Intruder:
    """A type no allowlist trusts."""

    def __init__(self) -> None:
        self.payload = "anything"


@pytest.fixture(scope="module")
def fitted(gsm8k_small: pd.DataFrame) -> DifficultyPredictor:
    return DifficultyPredictor(n_components=8, mf_rank=2).fit(gsm8k_small)


def test_round_trip_gives_identical_forecasts(fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame) -> None:
    data = persist.dumps(fitted)
    assert isinstance(data, bytes) and persist.untrusted_types(data) == []
    loaded = persist.loads(data)
    queries = queries_from_frame(gsm8k_small)[:20]
    a, b = fitted.forecast(queries), loaded.forecast(queries)
    np.testing.assert_array_equal(a.p_correct, b.p_correct)
    np.testing.assert_array_equal(a.output_tokens_p90, b.output_tokens_p90)
    np.testing.assert_allclose(loaded.score_one(queries[0])["p_correct"], a.p_correct[0], rtol=1e-9)


def test_artifact_with_a_disallowed_type_is_rejected(fitted: DifficultyPredictor) -> None:
    tampered = DifficultyPredictor(**fitted.get_params())
    tampered.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    tampered.extra_ = Intruder()
    data = sio.dumps(tampered)
    with pytest.raises(InvalidArgumentError, match="Intruder"):
        persist.loads(data)


def test_non_skops_bytes_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="skops"):
        persist.loads(b"not a zip at all")


def test_dumps_refuses_other_objects() -> None:
    with pytest.raises(InvalidArgumentError):
        persist.dumps(object())  # type: ignore[arg-type]
