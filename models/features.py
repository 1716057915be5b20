"""The query featuriser: what a scheduler knows at request time, as one dense numeric vector per query.

Columns, in order:
- text: word 1-2-gram TF-IDF of the prompt reduced by truncated SVD (`n_components`, nothing downloaded);
- text statistics: lengths, counts of numbers, sentences, symbols (generic, not tuned to one task);
- categories: one-hot `task=`, `tag=`, `tenant=` values seen at fit time (unseen values are all-zero);
- numeric run features: the keys of `Query.features` seen at fit time (missing keys are 0 before scaling).
  Dense columns are standardised with the training mean and deviation. The featuriser is fitted together with
  the predictor and saved with it. `transform` is vectorised over a batch; `compile()` gives `FastFeaturizer`,
  a plain-numpy path for one query without scikit-learn's per-call validation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from models.api import Query

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
    words = text.split()
    n_chars = len(text)
    max_num = max((_number_value(n) for n in nums), default=0.0)
    digits = sum(ch.isdigit() for ch in text)
    return [
        math.log1p(n_chars),
        math.log1p(len(words)),
        float(len(nums)),
        math.log1p(len(nums)),
        float(text.count(". ") + text.count("? ") + text.count("! ") + 1),
        math.log1p(min(max_num, 1e12)),
        float(sum("." in n for n in nums)),
        float(text.count("%")),
        float(text.count("$") + text.count("€") + text.count("£")),
        float(text.count("/")),
        digits / max(1, n_chars),
        float(text.count("?")),
        float(text.count("\n")),
        float(sum(text.count(c) for c in "{}()[]=;<>")),
        (n_chars - len(words)) / max(1, len(words)),
        math.log1p(query.input_tokens),
    ]


def _categories(query: Query) -> list[str]:
    return [f"task={query.task}", f"tenant={query.tenant}", *(f"tag={t}" for t in query.tags)]


def _fit_text(
    texts: list[str], n_components: int, max_features: int, seed: int
) -> tuple[TfidfVectorizer | None, TruncatedSVD | None]:
    """TF-IDF + SVD fitted on the training prompts, or (None, None) when they carry too few terms."""
    for min_df in (2, 1):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=max_features)
        try:
            tfidf = vec.fit_transform(texts)
        except ValueError:  # no terms left after pruning
            continue
        k = min(n_components, tfidf.shape[1] - 1, len(texts) - 1)
        if k < 1:
            continue
        svd = TruncatedSVD(n_components=k, random_state=seed)
        svd.fit(tfidf)
        if hasattr(vec, "stop_words_"):
            delattr(vec, "stop_words_")  # introspection only; can hold every pruned term (megabytes)
        return vec, svd
    return None, None


def _no_terms(text: str) -> list[str]:
    return []


class QueryFeaturizer(BaseEstimator, TransformerMixin):
    """Featurise a sequence of `Query` objects into a dense standardised matrix (see the module docstring)."""

    def __init__(self, n_components: int = 32, max_text_features: int = 20000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_text_features = max_text_features
        self.random_state = random_state

    def fit(self, queries: Sequence[Query], y: object = None) -> QueryFeaturizer:
        texts = [q.prompt for q in queries]
        self.vectorizer_, self.svd_ = _fit_text(
            texts, self.n_components, self.max_text_features, self.random_state
        )
        text = self._text(texts)
        cats: dict[str, int] = {}
        numeric: dict[str, int] = {}
        for q in queries:
            for c in _categories(q):
                cats.setdefault(c, len(cats))
            for key in q.features:
                numeric.setdefault(key, len(numeric))
        self.categories_ = cats
        self.numeric_keys_ = numeric
        dense = np.hstack([text, self._rest(queries)])
        self.mean_ = dense.mean(axis=0)
        self.scale_ = dense.std(axis=0)
        self.scale_[self.scale_ < 1e-9] = 1.0
        self.n_text_ = text.shape[1]
        self.n_features_out_ = dense.shape[1]
        return self

    def _text(self, texts: list[str]) -> np.ndarray:
        if self.vectorizer_ is None or self.svd_ is None:
            return np.zeros((len(texts), 0))
        return np.asarray(self.svd_.transform(self.vectorizer_.transform(texts)), dtype=float)

    def _rest(self, queries: Sequence[Query]) -> np.ndarray:
        stats = np.array([text_stats(q) for q in queries], dtype=float).reshape(len(queries), len(STAT_NAMES))
        cats = np.zeros((len(queries), len(self.categories_)))
        nums = np.zeros((len(queries), len(self.numeric_keys_)))
        for i, q in enumerate(queries):
            for c in _categories(q):
                j = self.categories_.get(c)
                if j is not None:
                    cats[i, j] = 1.0
            for key, value in q.features.items():
                j = self.numeric_keys_.get(key)
                if j is not None and math.isfinite(value):
                    nums[i, j] = value
        return np.hstack([stats, cats, nums])

    def transform(self, queries: Sequence[Query]) -> np.ndarray:
        check_is_fitted(self, "mean_")
        text = self._text([q.prompt for q in queries])
        dense = np.hstack([text, self._rest(queries)])
        return (dense - self.mean_) / self.scale_

    def feature_names(self) -> list[str]:
        check_is_fitted(self, "mean_")
        cats = sorted(self.categories_, key=self.categories_.__getitem__)
        nums = sorted(self.numeric_keys_, key=self.numeric_keys_.__getitem__)
        return (
            [f"svd{i}" for i in range(self.n_text_)]
            + list(STAT_NAMES)
            + cats
            + [f"feature:{k}" for k in nums]
        )

    def compile(self) -> FastFeaturizer:
        """A plain-numpy featuriser with the same output as `transform`, for one query at a time."""
        check_is_fitted(self, "mean_")
        vec, svd = self.vectorizer_, self.svd_
        if vec is None or svd is None:
            return FastFeaturizer(
                analyzer=_no_terms,
                vocabulary={},
                idf=np.zeros(0),
                projection=np.zeros((0, 0)),
                categories=dict(self.categories_),
                numeric_keys=dict(self.numeric_keys_),
                mean=self.mean_.copy(),
                scale=self.scale_.copy(),
            )
        vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
        proj = np.zeros((len(vocab), self.n_text_))
        cols = np.fromiter(vocab.values(), dtype=int, count=len(vocab))
        proj[cols] = svd.components_.T[cols]
        return FastFeaturizer(
            analyzer=vec.build_analyzer(),
            vocabulary=vocab,
            idf=np.asarray(vec.idf_, dtype=float),
            projection=proj,
            categories=dict(self.categories_),
            numeric_keys=dict(self.numeric_keys_),
            mean=self.mean_.copy(),
            scale=self.scale_.copy(),
        )


@dataclass(frozen=True)
class FastFeaturizer:
    """The fitted featuriser as plain dictionaries and arrays (sublinear TF-IDF, l2 norm, SVD projection)."""

    analyzer: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    idf: np.ndarray
    projection: np.ndarray
    categories: dict[str, int]
    numeric_keys: dict[str, int]
    mean: np.ndarray
    scale: np.ndarray

    def text_vector(self, prompt: str) -> np.ndarray:
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for term in self.analyzer(prompt):
            j = vocab.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts or self.projection.shape[1] == 0:
            return np.zeros(self.projection.shape[1])
        idx = np.fromiter(counts.keys(), dtype=int, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))
        w = tf * self.idf[idx]
        w /= np.sqrt(w @ w)
        return w @ self.projection[idx]

    def transform_one(self, query: Query) -> np.ndarray:
        cats = np.zeros(len(self.categories))
        for c in _categories(query):
            j = self.categories.get(c)
            if j is not None:
                cats[j] = 1.0
        nums = np.zeros(len(self.numeric_keys))
        for key, value in query.features.items():
            j = self.numeric_keys.get(key)
            if j is not None and math.isfinite(value):
                nums[j] = value
        dense = np.concatenate([self.text_vector(query.prompt), text_stats(query), cats, nums])
        return (dense - self.mean) / self.scale
