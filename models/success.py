"""P(correct | query, tier) from a sparse (query x tier) matrix of logged outcomes, shared across tiers.

The model is a one-factor item-response structure learned in three steps:
1. item response: logistic regression on the observed cells with a per-query ease and a per-(task, tier)
   ability (missing cells are simply absent: the full matrix is never assumed);
2. ease from features: ridge regression (penalty chosen by generalised cross-validation) of the query ease on
   the query's request-time features, so a new query with no runs still gets an ease, blended by least squares
   with the mean ease of its `neighbours` most similar training queries (`models.neighbours`); out-of-fold
   predictions of both feed the blend and step 3, so they learn how much to trust a predicted ease;
3. tier head: logit p = b + a_t + (g + s_t) * ease_hat (+ a task x tier offset when there are several tasks),
   with the per-tier terms L2-shrunk towards the shared ones, so a tier with few runs borrows strength;
   blended (`mf_weight`) with a low-rank query-feature x tier term (`models.mf`). The output is calibrated by
   identity, Platt or isotonic mapping, whichever has the lowest log-loss cross-validated over query folds of
   the training cells' logits (whose ease is out of fold). Prediction is a few matrix products on plain
   arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from models.neighbours import NeighbourEase, build_bank, oof_neighbour_ease
from planner.errors import InvalidArgumentError

EPS = 1e-4
CALIBRATIONS = ("auto", "none", "platt", "isotonic")


@dataclass(frozen=True)
class Cells:
    """Observed outcomes: query row index, tier index, task index (per cell) and score in [0, 1]."""

    query: np.ndarray
    tier: np.ndarray
    task: np.ndarray
    score: np.ndarray

    def subset(self, mask: np.ndarray) -> Cells:
        return Cells(self.query[mask], self.tier[mask], self.task[mask], self.score[mask])


@dataclass(frozen=True)
class Calibrator:
    """A monotone map of the raw logit: 'none', 'platt' (a * z + b) or 'isotonic' (interpolated steps on p).

    `tier_shift` (per tier, Platt only) is added to a * z + b when `z` is a (queries, tiers) matrix: the
    per-tier offsets a recalibration on a new task may fit (`models.recalibrate`). With a `base`, the map
    applies to logit(base(z)): a recalibration is a correction on top of the trained calibrator."""

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    tier_shift: np.ndarray | None = None
    base: Calibrator | None = None

    def apply(self, z: np.ndarray) -> np.ndarray:
        if self.base is not None:
            p0 = np.clip(self.base.apply(z), EPS, 1 - EPS)
            z = np.log(p0) - np.log1p(-p0)
        if self.method == "platt":
            shift = self.tier_shift
            if shift is not None and z.ndim >= 1 and z.shape[-1] == len(shift):
                return sigmoid(self.a * z + self.b + shift)
            return sigmoid(self.a * z + self.b)
        p = sigmoid(z)
        if self.method == "isotonic" and self.x is not None and self.y is not None:
            return np.clip(np.interp(p, self.x, self.y), EPS, 1 - EPS)
        return p


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _binary(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows to duplicate, labels and weights so fractional scores become weighted 0/1 outcomes."""
    idx = np.arange(len(y))
    if np.all((y == 0) | (y == 1)):
        return idx, y.astype(int), np.ones(len(y))
    return np.concatenate([idx, idx]), np.repeat([1, 0], len(y)), np.concatenate([y, 1 - y])


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _onehot(idx: np.ndarray, width: int) -> sparse.csr_matrix:
    n = len(idx)
    return sparse.csr_matrix((np.ones(n), (np.arange(n), idx)), shape=(n, width))


def _fit_logistic(design: sparse.csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    rows, labels, weights = _binary(y)
    if len(np.unique(labels)) < 2:  # all right or all wrong: a constant model is the honest answer
        labels = labels.copy()
        labels[0] = 1 - labels[0]
        weights = weights.copy()
        weights[0] = 1e-6
    lr = LogisticRegression(C=c, max_iter=2000)
    return lr.fit(design[rows], labels, sample_weight=weights)


@dataclass(frozen=True)
class MFParams:
    """A fitted low-rank term: logit = bias_t + u_t . (P x)."""

    proj: np.ndarray
    emb: np.ndarray
    bias: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.bias[None, :] + (x @ self.proj.T) @ self.emb.T


@dataclass(frozen=True)
class CoreParams:
    """The fitted model: ease = X @ w + c; z_irt = b + a_t + (g + s_t) ease + m[task, t];
    logit = (1 - mix) z_irt + mix z_mf with z_mf = bias_t + u_t . (P x) the low-rank term (when fitted)."""

    w: np.ndarray
    c: float
    b: float
    a: np.ndarray
    g: float
    s: np.ndarray
    m: np.ndarray
    mf: MFParams | None = None
    mix: float = 0.0
    neighbours: NeighbourEase | None = None
    blend: np.ndarray | None = None
    """(intercept, ridge weight, neighbour weight) of the predicted ease when `neighbours` is set."""

    def ease(self, x: np.ndarray) -> np.ndarray:
        """Predicted ease per row of `x`: the ridge regression, blended with the neighbour ease if fitted."""
        ease = x @ self.w + self.c
        if self.neighbours is not None and self.blend is not None:
            ease = self.blend[0] + self.blend[1] * ease + self.blend[2] * self.neighbours.predict(x)
        return np.asarray(ease)

    def logits(
        self, x: np.ndarray, task: np.ndarray | None = None, ease: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw logits, shape (n_queries, n_tiers); `ease` overrides the predicted ease (out-of-fold use)."""
        if ease is None:
            ease = self.ease(x)
        z = self.b + self.a[None, :] + np.outer(ease, self.s + self.g)
        if task is not None and self.m.shape[0] > 1:
            known = (task >= 0) & (task < self.m.shape[0])
            z[known] += self.m[task[known]]
        if self.mf is not None and self.mix > 0:
            z = (1.0 - self.mix) * z + self.mix * self.mf.logits(x)
        return z


class SuccessModel(BaseEstimator):
    """Shared low-rank success model over (query features x tier); see the module docstring."""

    def __init__(
        self,
        irt_c: float = 1.0,
        head_c: float = 1.0,
        n_folds: int = 5,
        calibration: str = "auto",
        validation_fraction: float = 0.2,
        mf_rank: int = 4,
        mf_weight: float = 0.5,
        neighbours: int = 25,
        random_state: int = 0,
    ) -> None:
        self.mf_rank = mf_rank
        self.mf_weight = mf_weight
        self.neighbours = neighbours
        self.irt_c = irt_c
        self.head_c = head_c
        self.n_folds = n_folds
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, x: np.ndarray, cells: Cells, n_tiers: int, n_tasks: int = 1) -> SuccessModel:
        """Fit on query features `x` (one row per query) and the observed `cells`."""
        if self.calibration not in CALIBRATIONS:
            raise InvalidArgumentError.for_field("calibration", self.calibration, f"one of {CALIBRATIONS}")
        if len(cells.score) == 0:
            raise InvalidArgumentError.for_field("cells", 0, "no observed outcomes")
        self.n_tiers_ = n_tiers
        self.n_tasks_ = n_tasks
        self.core_, ease_oof = self._fit_core(x, cells)
        rows = np.arange(len(cells.score))
        z = self.core_.logits(x[cells.query], cells.task, ease_oof[cells.query])[rows, cells.tier]
        self.calibrator_ = self._choose_calibrator(z, cells)
        return self

    # ---- the three linear steps -------------------------------------------------------------------------
    def _fit_core(self, x: np.ndarray, cells: Cells) -> tuple[CoreParams, np.ndarray]:
        """The fitted core and the out-of-fold predicted ease of every query row."""
        nq, nt, nk = x.shape[0], self.n_tiers_, self.n_tasks_
        pair = cells.task * nt + cells.tier
        irt = _fit_logistic(
            sparse.hstack([_onehot(cells.query, nq), _onehot(pair, nk * nt)]).tocsr(), cells.score, self.irt_c
        )
        ease = irt.coef_[0][:nq]
        seen = np.zeros(nq, dtype=bool)
        seen[cells.query] = True
        ease_hat = np.zeros(nq)
        n_folds = min(self.n_folds, int(seen.sum()))
        rows = np.flatnonzero(seen)
        fold = np.zeros(len(rows), dtype=int)
        if n_folds >= 2:
            splits = KFold(n_folds, shuffle=True, random_state=self.random_state).split(rows)
            for f, (fit_i, pred_i) in enumerate(splits):
                reg = _ridge().fit(x[rows[fit_i]], ease[rows[fit_i]])
                ease_hat[rows[pred_i]] = reg.predict(x[rows[pred_i]])
                fold[pred_i] = f
        final = _ridge().fit(x[rows], ease[rows])
        if n_folds < 2:
            ease_hat = final.predict(x)
        nb, blend = None, None
        if n_folds >= 2 and self.neighbours > 0 and len(rows) >= 4 * self.neighbours:
            nb_oof = oof_neighbour_ease(x[rows], ease[rows], fold, self.neighbours)
            design = np.column_stack([np.ones(len(rows)), ease_hat[rows], nb_oof])
            blend = np.linalg.lstsq(design, ease[rows], rcond=None)[0]
            ease_hat[rows] = design @ blend
            nb = build_bank(x[rows], ease[rows], self.neighbours, self.random_state)
        e = ease_hat[cells.query]
        tier_oh = _onehot(cells.tier, nt)
        blocks = [tier_oh, tier_oh.multiply(e[:, None]), sparse.csr_matrix(e[:, None])]
        if nk > 1:
            blocks.append(_onehot(pair, nk * nt))
        head = _fit_logistic(sparse.hstack(blocks).tocsr(), cells.score, self.head_c)
        coef = head.coef_[0]
        g = float(coef[2 * nt])
        m = coef[2 * nt + 1 : 2 * nt + 1 + nk * nt].reshape(nk, nt) if nk > 1 else np.zeros((1, nt))
        core = CoreParams(
            w=np.asarray(final.coef_, dtype=float),
            mf=self._fit_mf(x, cells) if self.mf_rank > 0 else None,
            mix=self.mf_weight if self.mf_rank > 0 else 0.0,
            c=float(final.intercept_),
            b=float(head.intercept_[0]),
            a=coef[:nt].copy(),
            g=g,
            s=coef[nt : 2 * nt].copy(),
            m=m,
            neighbours=nb,
            blend=blend,
        )
        return core, ease_hat

    def _fit_mf(self, x: np.ndarray, cells: Cells) -> MFParams:
        from models.mf import MFSuccess

        mf = MFSuccess(rank=self.mf_rank, random_state=self.random_state).fit(x, cells, self.n_tiers_)
        return MFParams(mf.proj_, mf.tier_emb_, mf.bias_)

    # ---- calibration ------------------------------------------------------------------------------------
    def _choose_calibrator(self, z: np.ndarray, cells: Cells) -> Calibrator:
        """The calibration (identity, Platt or isotonic) with the lowest cross-validated log-loss over query
        folds of the training cells' logits, whose query ease is out-of-fold (so nearly out-of-sample)."""
        queries = np.unique(cells.query)
        if self.calibration == "none" or len(queries) < 40:
            return Calibrator()
        methods = ("none", "platt", "isotonic") if self.calibration == "auto" else (self.calibration,)
        rng = np.random.default_rng(self.random_state)
        fold_of = np.zeros(int(cells.query.max()) + 1, dtype=int)
        fold_of[queries] = rng.permutation(len(queries)) % self.n_folds
        fold = fold_of[cells.query]
        losses = {}
        for method in methods:
            loss = 0.0
            for k in range(self.n_folds):
                test = fold == k
                cal = fit_calibrator(method, z[~test], cells.score[~test])
                loss += _logloss(cells.score[test], cal.apply(z[test])) * test.mean()
            losses[method] = loss
        self.calibration_losses_ = losses
        best = min(losses, key=losses.__getitem__)
        return fit_calibrator(best, z, cells.score)

    # ---- prediction -------------------------------------------------------------------------------------
    def logits(self, x: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        check_is_fitted(self, "core_")
        return self.core_.logits(x, task)

    def predict_proba_matrix(self, x: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(correct), shape (n_queries, n_tiers)."""
        return self.calibrator_.apply(self.logits(x, task))

    def ease(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "core_")
        return self.core_.ease(x)


def _ridge() -> RidgeCV:
    return RidgeCV(alphas=np.logspace(-2, 5, 29))


def fit_calibrator(method: str, z: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "none" or len(np.unique(y > 0.5)) < 2:
        return Calibrator()
    if method == "platt":
        lr = _fit_logistic(sparse.csr_matrix(z[:, None]), y, 1e4)
        return Calibrator("platt", a=float(lr.coef_[0][0]), b=float(lr.intercept_[0]))
    iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(sigmoid(z), y)
    return Calibrator("isotonic", x=np.asarray(iso.X_thresholds_), y=np.asarray(iso.y_thresholds_))
