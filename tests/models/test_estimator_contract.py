"""The scikit-learn estimator contract for every estimator in `models`.

`parametrize_with_checks` cannot run here: its checks fit on numeric X arrays, while these estimators fit on a
runs frame (ids, text, tiers) or on (features, observed cells). The contract checks that do not fit are run on
each: nothing set in __init__, default-constructible parameters, get_params / set_params invariance.
"""

from __future__ import annotations

import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.utils import estimator_checks as checks

from models.baseline import PriorForecaster
from models.features import QueryFeaturizer
from models.knn import KNNSuccess
from models.mf import MFSuccess
from models.predictor import DifficultyPredictor
from models.routers import KNNForecaster, MFForecaster
from models.success import SuccessModel
from models.tokens import TokenModel

ESTIMATORS = [
    DifficultyPredictor,
    PriorForecaster,
    KNNForecaster,
    MFForecaster,
    QueryFeaturizer,
    SuccessModel,
    TokenModel,
    KNNSuccess,
    MFSuccess,
]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_contract_checks_that_apply(cls: type[BaseEstimator]) -> None:
    name = cls.__name__
    checks.check_no_attributes_set_in_init(name, cls())
    checks.check_parameters_default_constructible(name, cls())
    checks.check_get_params_invariance(name, cls())
    checks.check_set_params(name, cls())
    assert clone(cls()).get_params() == cls().get_params()
