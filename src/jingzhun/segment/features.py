"""The feature pipeline: profile traits → a numeric matrix a clustering method can use.

Steps, fitted once per run and stored with it (so new users are transformed the same way):

1. **Select** the features: profile traits by name, plus a few derived from them (below).
   Missing values are filled per feature: rates and counts with 0, ``recency_days`` of a user
   who never ordered with their ``tenure_days`` (as long ago as we have known them). The
   selection is one Ibis expression (:func:`select`) that DuckDB and Spark both compile.
2. **log1p** every feature that is non-negative and right-skewed (sample skewness > 1): money and
   counts, typically. Which ones is decided on the fitting data and recorded.
3. **Robust scaling**: subtract the median, divide by the interquartile range (by the standard
   deviation where the IQR is 0, as for a count that most users have at 0). A feature with no
   spread at all cannot separate anyone: one the user named is an error; one of the defaults
   is left out before fitting (:func:`drop_constant_defaults`), as ``price_percentile`` is in a
   store without a catalog.
4. **PCA** (optional): keep the components explaining ``pca`` of the variance (a fraction) or
   ``pca`` components (an integer).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from jingzhun.errors import InputError
from jingzhun.store.sql import Sql


def _months(t: ir.Table) -> ir.Value:
    """Tenure in months of 30 days, at least one (the rates' denominator)."""
    return ibis.greatest(t.tenure_days.fill_null(0), 30)


def _hour_angle(t: ir.Table) -> ir.Value:
    """The preferred hour (noon when unknown) as an angle: 2π · hour / 24."""
    return 2 * ibis.pi * t.preferred_hour.fill_null(12) / 24


#: Features computed from profile columns: name -> (its Ibis definition over ``profiles``,
#: what it means). One definition: DuckDB and Spark compile the same expression.
DERIVED: dict[str, tuple[Callable[[ir.Table], ir.Value], str]] = {
    "affinity_concentration": (
        lambda t: t.category_affinity.values().maxs().fill_null(0),
        "the share of the user's top category in their affinity vector A(u) (1: one passion)",
    ),
    "hour_sin": (
        lambda t: _hour_angle(t).sin(),
        "the preferred hour of day on a circle (sine)",
    ),
    "hour_cos": (
        lambda t: _hour_angle(t).cos(),
        "the preferred hour of day on a circle (cosine)",
    ),
    "orders_per_month": (
        lambda t: t.frequency * 30.0 / _months(t),
        "orders per 30 days of tenure (at least one month): a purchase rate, not a total",
    ),
    "sessions_per_month": (
        lambda t: t.sessions.fill_null(0) * 30.0 / _months(t),
        "sessions per 30 days of tenure (at least one month): a visit rate",
    ),
    "recency_share": (
        lambda t: (
            ibis.coalesce(t.recency_days, t.tenure_days, 0)
            / ibis.greatest(t.tenure_days.fill_null(0), 1)
        ),
        "days since the last order as a share of tenure (1: never ordered, or long lapsed)",
    ),
    "views_per_session": (
        # nullif: no division by zero (NULL on DuckDB, an error on Spark in ANSI mode)
        lambda t: (t.n_product_viewed / t.sessions.nullif(0)).fill_null(0),
        "product views per session",
    ),
}

#: The profile columns each derived feature is computed from.
NEEDS: dict[str, tuple[str, ...]] = {
    "orders_per_month": ("frequency", "tenure_days"),
    "sessions_per_month": ("sessions", "tenure_days"),
    "recency_share": ("recency_days", "tenure_days"),
    "affinity_concentration": ("category_affinity",),
    "hour_sin": ("preferred_hour",),
    "hour_cos": ("preferred_hour",),
    "views_per_session": ("n_product_viewed", "sessions"),
}

#: Fill for missing values where 0 is wrong: a user who never ordered was last "active" as
#: long ago as we have known them (name -> Ibis definition).
FILL: dict[str, Callable[[ir.Table], ir.Value]] = {
    "recency_days": lambda t: ibis.coalesce(
        t.recency_days, *([t.tenure_days] if "tenure_days" in t.columns else []), 0
    ),
}

#: The documented default feature set. Rates over tenure rather than totals (a customer of
#: two years has more orders than one of two months at the same rate), basket value, browsing
#: style, price and promotion appetite, taste concentration and time of day. On simulator data
#: this set separates the personas better than totals do (docs/segments.md has the figures).
DEFAULT_FEATURES: tuple[str, ...] = (
    "orders_per_month",
    "sessions_per_month",
    "recency_share",
    "tenure_days",
    "aov",
    "views_per_session",
    "view_to_cart",
    "discount_share",
    "price_percentile",
    "affinity_concentration",
    "hour_sin",
    "hour_cos",
)

_NUMERIC = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "DECIMAL", "HUGEINT", "SMALLINT", "TINYINT")

#: A feature whose standard deviation (after log1p) is at most this separates no one.
_FLAT = 1e-12


def numeric_traits(columns: dict[str, str]) -> list[str]:
    """The profile columns (name -> DuckDB type) usable as features, plus the derived ones."""
    names = [c for c, t in columns.items() if t.upper().startswith(_NUMERIC)]
    return [*names, *(d for d in DERIVED if _derivable(d, columns))]


def _derivable(name: str, columns: dict[str, str]) -> bool:
    return all(n in columns for n in NEEDS[name])


def columns_of(table: ir.Table) -> dict[str, str]:
    """``table``'s columns and their types in DuckDB's spelling (as :meth:`Store.columns`
    gives them), for a table on any engine: a lake's profiles on Spark too."""
    from ibis.backends.sql.datatypes import DuckDBType

    return {name: DuckDBType.from_ibis(t).sql("duckdb") for name, t in table.schema().items()}


def _check(features: list[str], columns: dict[str, str]) -> None:
    valid = numeric_traits(columns)
    unknown = [f for f in features if f not in valid]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], valid, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"--features: unknown or non-numeric trait {unknown[0]!r}{guess}",
            hint="choose from: " + ", ".join(valid),
        )
    if len(set(features)) != len(features):
        dup = next(f for f in features if features.count(f) > 1)
        raise InputError(f"--features: {dup!r} is named twice")


def select(profiles: ir.Table, features: list[str]) -> ir.Table:
    """``user_id`` and the ``features`` as doubles, derived features computed and missing
    values filled (0, or :data:`FILL`), ordered by user id: the one definition of the feature
    rows, an Ibis expression over ``profiles`` (a store's, a point-in-time profile, or a
    lake's on Spark)."""
    _check(features, columns_of(profiles))
    exprs = {}
    for f in features:
        if f in DERIVED:
            value = DERIVED[f][0](profiles)
        elif f in FILL:
            value = FILL[f](profiles)
        else:
            value = profiles[f].fill_null(0)
        exprs[f] = value.cast("float64")
    return profiles.select("user_id", **exprs).order_by("user_id")


def select_sql(features: list[str], columns: dict[str, str], table: str = "profiles") -> Sql:
    """``SELECT user_id, f1, f2 … FROM profiles ORDER BY user_id``: :func:`select` compiled
    for DuckDB over ``table`` (a table with the profiles' columns, such as a point-in-time
    profile), whose ``columns`` (name -> DuckDB type) are given."""
    from ibis.backends.sql.datatypes import DuckDBType

    _check(features, columns)
    unbound = ibis.table({c: DuckDBType.from_string(t) for c, t in columns.items()}, name=table)
    return ibis.to_sql(select(unbound, features), dialect="duckdb")


@dataclass
class FeaturePipeline:
    """log1p for skewed features, robust scaling, optional PCA (scikit-learn style).

    Parameters
    ----------
    features : list of str
        Feature names, in column order.
    pca : float or int or None
        A fraction of variance to keep (0 < pca < 1), a number of components, or None.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).lognormal(size=(500, 2))
    >>> pipe = FeaturePipeline(["monetary", "aov"]).fit(X)
    >>> pipe.transform(X).shape
    (500, 2)
    """

    features: list[str]
    pca: float | int | None = None
    log_: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    center_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    components_: np.ndarray | None = None
    mean_: np.ndarray | None = None
    explained_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> FeaturePipeline:
        if X.shape[1] != len(self.features):
            raise ValueError("X has the wrong number of columns")
        X = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0)
        self.log_ = _skewed(X)
        Z = self._log(X)
        q1, med, q3 = np.percentile(Z, [25, 50, 75], axis=0)
        iqr = q3 - q1
        zstd = Z.std(axis=0)
        constant = [f for f, s in zip(self.features, zstd, strict=True) if not s > _FLAT]
        if constant:
            value = X[0, self.features.index(constant[0])]
            raise InputError(
                f"--features: {constant[0]!r} is constant (every user has {value:g}); it cannot separate segments",
                hint="drop it from --features",
            )
        self.center_ = med
        self.scale_ = np.where(iqr > _FLAT, iqr, zstd)
        Z = (Z - self.center_) / self.scale_
        if self.pca is not None:
            from sklearn.decomposition import PCA

            pca = self.pca
            if (isinstance(pca, float) and not 0 < pca < 1) or (
                isinstance(pca, int) and not (1 <= pca <= Z.shape[1])
            ):
                raise InputError(
                    f"--pca {pca}: give a variance fraction between 0 and 1 or a number of components from 1 to {Z.shape[1]}"
                )
            model = PCA(n_components=pca, svd_solver="full", random_state=0).fit(
                Z[:200_000] if len(Z) > 200_000 else Z
            )
            self.components_ = model.components_
            self.mean_ = model.mean_
            self.explained_ = model.explained_variance_ratio_
        return self

    def _log(self, X: np.ndarray) -> np.ndarray:
        return _log1p(X, self.log_)

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = (self._log(np.atleast_2d(X)) - self.center_) / self.scale_
        if self.components_ is not None:
            Z = (Z - self.mean_) @ self.components_.T
        return Z

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    @property
    def output_names(self) -> list[str]:
        if self.components_ is None:
            return list(self.features)
        return [f"pc{i + 1}" for i in range(len(self.components_))]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "log1p": [f for f, b in zip(self.features, self.log_, strict=True) if b],
            "scaling": "robust (median, IQR; std where the IQR is 0)",
        }
        if self.explained_ is not None:
            out["pca_components"] = len(self.explained_)
            out["pca_explained"] = round(float(self.explained_.sum()), 4)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        arrs = {"log": self.log_, "center": self.center_, "scale": self.scale_}
        if self.components_ is not None:
            arrs |= {"components": self.components_, "pca_mean": self.mean_}
        return arrs

    @classmethod
    def from_arrays(cls, features: list[str], arrs: dict[str, np.ndarray]) -> FeaturePipeline:
        pipe = cls(list(features))
        pipe.log_ = arrs["log"].astype(bool)
        pipe.center_ = arrs["center"]
        pipe.scale_ = arrs["scale"]
        if "components" in arrs:
            pipe.components_ = arrs["components"]
            pipe.mean_ = arrs["pca_mean"]
        return pipe


def _skewed(X: np.ndarray) -> np.ndarray:
    """Which columns of ``X`` (no NaN) get log1p: non-negative with sample skewness above 1."""
    lo = X.min(axis=0)
    mean, std = X.mean(axis=0), X.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(std > 0, ((X - mean) ** 3).mean(axis=0) / std**3, 0.0)
    return (lo >= 0) & (skew > 1.0)


def _log1p(X: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``X`` with log1p applied to ``columns`` (a mask); missing values count as 0, as in the
    SQL that selects the features."""
    Z = np.nan_to_num(np.array(X, dtype=np.float64, copy=True), nan=0.0)
    Z[:, columns] = np.log1p(np.maximum(Z[:, columns], 0))
    return Z


def constant_features(features: list[str], X: np.ndarray) -> list[str]:
    """The ``features`` (columns of ``X``, in order) that no row differs in, by the test
    :meth:`FeaturePipeline.fit` applies (spread after log1p, missing values as 0).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.arange(5.0), np.zeros(5), np.full(5, np.nan)])
    >>> constant_features(["aov", "price_percentile", "discount_share"], X)
    ['price_percentile', 'discount_share']
    """
    if X.shape[1] != len(features):
        raise ValueError("X has the wrong number of columns")
    if len(X) == 0:
        return []
    X = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0)
    spread = _log1p(X, _skewed(X)).std(axis=0)
    return [f for f, s in zip(features, spread, strict=True) if not s > _FLAT]


def drop_constant_defaults(
    traits: pd.DataFrame, features: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Leave out the default ``features`` that no user differs in.

    A default feature can be constant through no fault of the user's: without a catalog every
    ``price_percentile`` is 0, and without discounts every ``discount_share`` is. It is left
    out (the caller says so) rather than failing the run; a constant feature the user named
    stays an error (:meth:`FeaturePipeline.fit`).

    Parameters
    ----------
    traits : DataFrame
        ``user_id`` and the ``features`` columns (:func:`select_sql`), one row per user.
    features : list of str
        The default features, in column order.

    Returns
    -------
    traits : DataFrame
        ``traits`` without the dropped columns.
    kept : list of str
        The features left, in their order.
    dropped : list of str
        The constant features left out, in their order.

    Raises
    ------
    InputError
        When every default feature is constant: nothing is left to segment on.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame(
    ...     {"user_id": ["a", "b"], "aov": [1.0, 9.0], "price_percentile": [0.0, 0.0]}
    ... )
    >>> _, kept, dropped = drop_constant_defaults(frame, ["aov", "price_percentile"])
    >>> kept, dropped
    (['aov'], ['price_percentile'])
    """
    dropped = constant_features(features, traits[features].to_numpy(np.float64))
    if not dropped:
        return traits, list(features), []
    kept = [f for f in features if f not in dropped]
    if not kept:
        raise InputError(
            f"--features: every default feature is the same for every user ({', '.join(dropped)})",
            hint="ingest more events and rebuild the profiles, or name traits with --features",
        )
    return traits.drop(columns=dropped), kept, dropped


def to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as .npz bytes (no pickle: models are data, not code)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
