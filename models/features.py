"""The query featuriser: what a scheduler knows at request time, as one dense numeric vector per query.

Columns, in order:
- text: word 1-2-gram TF-IDF of the prompt (sublinear tf, l2 norm) projected by a truncated SVD fitted on the
  training prompts (`n_components`; nothing is downloaded);
- text statistics: lengths, counts of numbers, sentences, symbols (generic, not tuned to one task);
- categories: one-hot `task=`, `tag=`, `tenant=` values seen at fit time (unseen values are all-zero);
- numeric run features: the keys of `Query.features` seen at fit time (missing keys are 0 before scaling).

Dense columns are standardised with the training mean and deviation and clipped to +-`CLIP`. Fitting uses
scikit-learn's TfidfVectorizer and TruncatedSVD; the fitted state kept is plain arrays (terms, idf,
projection), so transform runs its own vectorised numpy/scipy path for a batch and for one query, without
scikit-learn's per-call validation, and the artifact holds no scikit-learn object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from itertools import pairwise, repeat
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from models.api import Query

TOKEN = re.compile(r"(?u)\b\w\w+\b")
"""scikit-learn's default token pattern (the vocabulary is fitted with it)."""

CLIP = 6.0
SMALL_BATCH = 32
"""Up to this many texts are vectorised row by row; larger batches go through one sparse product."""
"""Standardised features are clipped to [-CLIP, CLIP]: an outlying prompt cannot push a linear model far
outside the range it was trained on."""

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

STAT_NAMES = (
    "log_chars",
    "log_words",
    "n_numbers",
    "log_n_numbers",
    "n_sentences",
    "log_max_number",
    "n_decimals",
    "n_percent",
    "n_currency",
    "n_slash",
    "digit_fraction",
    "n_questions",
    "n_lines",
    "n_code_symbols",
    "mean_word_len",
    "log_input_tokens",
)


def _number_value(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def text_stats(query: Query) -> list[float]:
    """Generic statistics of one prompt (see `STAT_NAMES`)."""
    text = query.prompt
    nums = _NUMBER.findall(text)
    n_words = len(text.split())
    n_chars = len(text)
    max_num = max(map(_number_value, nums), default=0.0)
    return [
        math.log1p(n_chars),
        math.log1p(n_words),
        float(len(nums)),
        math.log1p(len(nums)),
        float(text.count(". ") + text.count("? ") + text.count("! ") + 1),
        math.log1p(min(max_num, 1e12)),
        float(sum("." in n for n in nums)),
        float(text.count("%")),
        float(text.count("$") + text.count("€") + text.count("£")),
        float(text.count("/")),
        sum(map(len, nums)) / max(1, n_chars),
        float(text.count("?")),
        float(text.count("\n")),
        float(sum(map(text.count, "{}()[]=;<>"))),
        (n_chars - n_words) / max(1, n_words),
        math.log1p(query.input_tokens),
    ]


def _categories(query: Query) -> list[str]:
    return [f"task={query.task}", f"tenant={query.tenant}", *(f"tag={t}" for t in query.tags)]


def _terms(text: str) -> list[str]:
    """Word unigrams and bigrams exactly as TfidfVectorizer(ngram_range=(1, 2)) analyses them."""
    words = TOKEN.findall(text.lower())
    return [*words, *map(" ".join, pairwise(words))]


def _fit_text(
    texts: list[str], n_components: int, max_features: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(terms, idf, projection) of a TF-IDF + SVD fitted on the prompts; empty arrays when too few terms."""
    for min_df in (2, 1):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=max_features)
        try:
            tfidf = vec.fit_transform(texts)
        except ValueError:  # no terms left after pruning
            continue
        k = min(n_components, tfidf.shape[1] - 1, len(texts) - 1)
        if k < 1:
            continue
        svd = TruncatedSVD(n_components=k, random_state=seed).fit(tfidf)
        terms = np.empty(len(vec.vocabulary_), dtype=object)
        for term, j in vec.vocabulary_.items():
            terms[j] = term
        return (
            terms.astype(str),
            np.asarray(vec.idf_, dtype=float),
            np.asarray(svd.components_.T, dtype=float),
        )
    return np.zeros(0, dtype=str), np.zeros(0), np.zeros((0, 0))


class QueryFeaturizer(BaseEstimator, TransformerMixin):
    """Featurise a sequence of `Query` objects into a dense standardised matrix (see the module docstring)."""

    def __init__(self, n_components: int = 32, max_text_features: int = 20000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_text_features = max_text_features
        self.random_state = random_state

    def fit(self, queries: Sequence[Query], y: object = None) -> QueryFeaturizer:
        texts = [q.prompt for q in queries]
        self.terms_, self.idf_, self.projection_ = _fit_text(
            texts, self.n_components, self.max_text_features, self.random_state
        )
        self.n_text_ = self.projection_.shape[1]
        cats: dict[str, int] = {}
        numeric: dict[str, int] = {}
        for q in queries:
            for c in _categories(q):
                cats.setdefault(c, len(cats))
            for key in q.features:
                numeric.setdefault(key, len(numeric))
        self.categories_ = cats
        self.numeric_keys_ = numeric
        self.mean_ = np.zeros(0)
        self.scale_ = np.zeros(0)
        dense = self._dense(queries)
        self.mean_ = dense.mean(axis=0)
        scale = dense.std(axis=0)
        scale[scale < 1e-9] = 1.0
        self.scale_ = scale
        self.n_features_out_ = dense.shape[1]
        return self

    def transform(self, queries: Sequence[Query]) -> np.ndarray:
        """Standardised features, shape (len(queries), n_features_out_)."""
        check_is_fitted(self, "mean_")
        return np.clip((self._dense(queries) - self.mean_) / self.scale_, -CLIP, CLIP)

    def transform_one(self, query: Query) -> np.ndarray:
        """The same as `transform([query])[0]`, on the hot path (no validation, no sparse matrices)."""
        cats, nums = self._side(query)
        dense = np.concatenate([self._text_row(query.prompt), text_stats(query), cats, nums])
        return np.clip((dense - self.mean_) / self.scale_, -CLIP, CLIP)

    def feature_names(self) -> list[str]:
        check_is_fitted(self, "mean_")
        cats = sorted(self.categories_, key=self.categories_.__getitem__)
        nums = sorted(self.numeric_keys_, key=self.numeric_keys_.__getitem__)
        text = [f"svd{i}" for i in range(self.n_text_)]
        return text + list(STAT_NAMES) + cats + [f"feature:{k}" for k in nums]

    # ---- internals --------------------------------------------------------------------------------------
    def _vocabulary(self) -> dict[str, int]:
        vocab: dict[str, int] | None = self.__dict__.get("_vocab")
        if vocab is None:
            vocab = {str(t): j for j, t in enumerate(self.terms_)}
            self.__dict__["_vocab"] = vocab
        return vocab

    def _text_row(self, text: str) -> np.ndarray:
        """TF-IDF (sublinear, l2) x projection of one text: term counts in a dict, one small gather."""
        vocab = self._vocabulary()
        counts: dict[int, int] = {}
        for term in _terms(text):
            j = vocab.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(self.n_text_)
        idx = np.fromiter(counts.keys(), dtype=int, count=len(counts))
        w = (1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))) * self.idf_[idx]
        return np.asarray((w / math.sqrt(float(w @ w))) @ self.projection_[idx])

    def _text(self, texts: Sequence[str]) -> np.ndarray:
        """TF-IDF (sublinear, l2) x projection for a batch: row by row up to `SMALL_BATCH` texts (scipy's
        sparse constructors cost more than that much work), else one sparse product."""
        if self.n_text_ == 0:
            return np.zeros((len(texts), 0))
        if len(texts) <= SMALL_BATCH:
            return np.array([self._text_row(t) for t in texts]).reshape(len(texts), self.n_text_)
        return self._text_sparse(texts)

    def _text_sparse(self, texts: Sequence[str]) -> np.ndarray:
        get = self._vocabulary().get
        ids: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            terms = _terms(text)
            lengths[i] = len(terms)
            ids.extend(map(get, terms, repeat(-1)))
        cols = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts)), lengths)
        known = cols >= 0
        counts = sparse.csr_matrix(
            (np.ones(int(known.sum())), (rows[known], cols[known])), shape=(len(texts), len(self.terms_))
        )
        counts.sum_duplicates()
        counts.data = (1.0 + np.log(counts.data)) * self.idf_[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        out = np.asarray(counts @ self.projection_)
        return out / np.where(norms > 0, norms, 1.0)[:, None]

    def _side(self, query: Query) -> tuple[np.ndarray, np.ndarray]:
        cats = np.zeros(len(self.categories_))
        for c in _categories(query):
            j = self.categories_.get(c)
            if j is not None:
                cats[j] = 1.0
        nums = np.zeros(len(self.numeric_keys_))
        for key, value in query.features.items():
            j = self.numeric_keys_.get(key)
            if j is not None and math.isfinite(value):
                nums[j] = value
        return cats, nums

    def _dense(self, queries: Sequence[Query]) -> np.ndarray:
        n = len(queries)
        stats = np.array([text_stats(q) for q in queries], dtype=float).reshape(n, len(STAT_NAMES))
        side = [self._side(q) for q in queries]
        cats = np.array([c for c, _ in side], dtype=float).reshape(n, len(self.categories_))
        nums = np.array([v for _, v in side], dtype=float).reshape(n, len(self.numeric_keys_))
        return np.hstack([self._text([q.prompt for q in queries]), stats, cats, nums])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_vocab", None)
        return state
