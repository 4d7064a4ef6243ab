"""The estimator contract every model family follows, in the style of scikit-learn.

A model declares its parameters once, as :class:`Param` entries in ``PARAMS``. Then:

- the constructor only validates and stores them, as attributes of the same names: an unknown
  name is an :class:`~jingzhun.errors.InputError` that names it and lists the valid ones, a
  value out of its range one that names the parameter and says the range;
- ``fit`` learns; learned state is set there, in attributes whose names end in ``_``;
- :meth:`Estimator.to_state` returns the parameters and the fitted state as NumPy arrays
  only (a ``meta`` array of JSON text, plus whatever arrays the model learned), so a model
  saves with ``np.savez`` and loads with ``np.load(allow_pickle=False)``;
  :meth:`Estimator.from_state` rebuilds it exactly: the same parameters, the same answers;
- :meth:`Estimator.get_params` returns the parameters.

Segment methods, propensity and churn classifiers, uplift learners and CLV models derive from
:class:`Estimator`. The recommenders keep their own base class (ids in, ids out, saved with
their vocabularies) and share :class:`Param` and :func:`check_params` with it.

Examples
--------
>>> class Shrink(Estimator):
...     name = "shrink"
...     PARAMS = {"alpha": Param(0.5, float, 0, 1)}
...     _fitted = "mean_"
...     def fit(self, X):
...         self.mean_ = check_matrix(X, "shrink.fit").mean(axis=0) * (1 - self.alpha)
...         return self
...     def _arrays(self):
...         return {"mean": self.mean_}
...     def _restore(self, learned, state):
...         self.mean_ = np.asarray(state["mean"])
>>> model = Shrink(alpha=0.25).fit([[1.0, 2.0], [3.0, 4.0]])
>>> Shrink.from_state(model.to_state()).mean_
array([1.5 , 2.25])
>>> Shrink(alpah=0.25)
Traceback (most recent call last):
...
jingzhun.errors.InputError: shrink: unknown parameter 'alpah'; valid parameters: alpha
>>> Shrink(alpha=2)
Traceback (most recent call last):
...
jingzhun.errors.InputError: shrink: alpha must be between 0 and 1, not 2
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from jingzhun.checks import bounded_int, finite, shown
from jingzhun.errors import InputError

__all__ = [
    "STATE_FORMAT",
    "Estimator",
    "Param",
    "check_matrix",
    "check_params",
    "unknown_parameters",
]

#: Version of the layout :meth:`Estimator.to_state` writes; a newer one is refused on load.
STATE_FORMAT = 1


@dataclass(frozen=True)
class Param:
    """One parameter of a model: its default, type and range, and the values tuning tries.

    Parameters
    ----------
    default : Any
        The value when none is given. A default of ``None`` means "chosen by the model" and
        ``None`` is then always accepted.
    kind : type
        ``int`` or ``float`` (checked as numbers, text such as ``'64'`` from a settings file
        read as the number it says), ``bool`` (only ``True`` or ``False``), ``dict`` (a
        mapping of JSON-able values, stored as its JSON form), or another type the value is
        converted to (``str``, ``tuple``).
    low, high : float, optional
        Inclusive bounds of a number.
    choices : tuple, optional
        The only values allowed.
    grid : tuple
        Values tuning tries.
    help : str
        One line for ``--help`` and the docs.
    lo_open : bool
        Exclude ``low`` itself (a quantity that must be positive).
    """

    default: Any
    kind: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    grid: tuple[Any, ...] = ()
    help: str = ""
    lo_open: bool = False

    def check(self, model: str, name: str, value: Any) -> Any:
        """``value`` as the parameter stores it; an :class:`InputError` naming
        ``model: name`` when it is not allowed."""
        if value is None and self.default is None:
            return None
        label = f"{model}: {name}"
        if self.choices is not None:
            if value not in self.choices:
                raise InputError(
                    f"{label}={value!r} is not valid",
                    hint=f"use one of: {', '.join(map(str, self.choices))}",
                )
            return value
        if self.kind is bool:
            if isinstance(value, bool | np.bool_):
                return bool(value)
            raise InputError(f"{label} must be true or false, not {shown(value)}")
        if self.kind is dict:
            if not isinstance(value, Mapping):
                raise InputError(
                    f"{label} must be a mapping of names to values, not {shown(value)}"
                )
            # Stored as its JSON form, so that it saves and loads back equal (a tuple in it
            # would load as a list).
            return json.loads(_json_text(dict(value), label))
        if self.kind not in (int, float):
            try:
                return self.kind(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"{label} must be a {self.kind.__name__}, not {shown(value)}"
                ) from None
        if isinstance(value, str):  # '64' from a settings file or --param: the number it says
            with contextlib.suppress(ValueError):  # not a number: the check below says so
                value = float(value)
        # The shared checks, for every numeric parameter of every model: a real number is
        # finite and in range (NaN passed every comparison), a count is a whole number (1.5
        # was read as 1 and true as 1, without a word).
        if self.kind is int:
            low = self.low + 1 if self.lo_open and self.low is not None else self.low
            return bounded_int(value, label, lo=low, hi=self.high)
        return finite(value, label, lo=self.low, hi=self.high, lo_open=self.lo_open)


def unknown_parameters(model: str, unknown: Iterable[str], valid: Iterable[str]) -> InputError:
    """The error for parameters ``model`` does not have: it names them and lists ``valid``."""
    names = sorted(unknown)
    word = "parameter" if len(names) == 1 else "parameters"
    return InputError(
        f"{model}: unknown {word} {', '.join(map(repr, names))}",
        hint=f"valid parameters: {', '.join(valid) or '(none)'}",
    )


def check_params(
    model: str, specs: Mapping[str, Param], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Every parameter of ``specs``: the given value checked, or the default.

    Raises
    ------
    InputError
        For a name ``specs`` lacks (listing the valid ones) or a value a :class:`Param`
        refuses.
    """
    unknown = [name for name in given if name not in specs]
    if unknown:
        raise unknown_parameters(model, unknown, specs)
    return {name: p.check(model, name, given.get(name, p.default)) for name, p in specs.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_text(value: Any, label: str) -> str:
    """``value`` as JSON text; an :class:`InputError` naming ``label`` when it is not JSON."""
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{label} cannot be saved ({exc})",
            hint="use numbers, strings, booleans, lists and mappings of them",
        ) from None


def check_matrix(
    X: Any, where: str, *, n_features: int | None = None, allow_nan: bool = False
) -> np.ndarray:
    """``X`` as a float64 matrix with one row per user, or a clear :class:`InputError`.

    Parameters
    ----------
    X : array-like of shape (n, n_features)
        The features.
    where : str
        The method the message names (``kmeans.fit``).
    n_features : int, optional
        The number of columns the model was fitted on.
    allow_nan : bool
        Let missing values through (models that route them themselves, as LightGBM does);
        infinities are refused either way.

    Raises
    ------
    InputError
        If ``X`` is not numeric, not a non-empty 2-D matrix, has another number of columns
        than ``n_features``, or holds NaN (unless allowed) or infinite values.
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: `X` must be numeric", hint="encode categories as numbers first"
        ) from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(
            f"{where}: `X` must be a non-empty 2-D matrix, got shape {arr.shape}",
            hint="one row per user, one column per feature",
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(
            f"{where}: `X` has {arr.shape[1]} features, the model was fitted on {n_features}",
            hint="build the features the same way as for training",
        )
    # Two passes without a temporary the size of X (scoring passes millions of rows): min and
    # max are NaN when any value is, and infinite when any value is (fmin/fmax skip NaN).
    if allow_nan:
        lo, hi = np.fmin.reduce(arr, axis=None), np.fmax.reduce(arr, axis=None)
        bad = int(np.isinf(arr).sum()) if np.isinf(lo) or np.isinf(hi) else 0
        what = "infinite"
    else:
        lo, hi = np.min(arr), np.max(arr)
        bad = int((~np.isfinite(arr)).sum()) if not (np.isfinite(lo) and np.isfinite(hi)) else 0
        what = "NaN or infinite"
    if bad:
        raise InputError(
            f"{where}: `X` has {bad:,} {what} values",
            hint="fill missing features with finite numbers first (as the profiles do)",
        )
    return arr


class Estimator:
    """Base of every model outside the recommenders (see the module's docstring).

    Subclasses set ``name`` (the registry name, stored with the state), ``family`` (what the
    messages call the model), ``PARAMS`` and ``_fitted`` (the learned attribute whose presence
    marks a fitted model); implement ``fit``; and, for persistence, ``_learned`` (JSON-able
    scalars), ``_arrays`` (NumPy arrays) and ``_restore`` (their inverse). A family base
    overrides :meth:`_registry` so that :meth:`from_state` called on it finds the right
    subclass.
    """

    #: Registry name (a class attribute; a class that serves several names sets it per
    #: instance).
    name: str = ""
    #: What messages call a model of the family ("uplift model").
    family: ClassVar[str] = "model"
    #: The parameters, in the order :meth:`get_params` and ``repr`` show them.
    PARAMS: ClassVar[Mapping[str, Param]] = {}
    #: The learned attribute that exists once the model is fitted.
    _fitted: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        for key, value in check_params(self.name, self.PARAMS, params).items():
            setattr(self, key, value)
        self._validate()
        _json_text(self.get_params(), f"{self.name}: the parameters")

    def _validate(self) -> None:
        """Checks that involve several parameters, after each passed its own."""

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters, by name."""
        return {key: getattr(self, key) for key in self.PARAMS}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitted state -----------------------------------------------------------------------

    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_state`) has given the model its learned state."""
        return hasattr(self, self._fitted)

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise InputError(f"{self.name}: the model is not fitted", hint="call fit first")

    def _learned(self) -> dict[str, Any]:
        """Learned scalars and small lists (JSON-able), saved in ``meta``."""
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays, saved beside ``meta`` under these names."""
        return {}

    def _restore(self, learned: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        """Set the learned state from what :meth:`_learned` and :meth:`_arrays` returned."""
        raise NotImplementedError

    def to_state(self) -> dict[str, np.ndarray]:
        """The fitted model as NumPy arrays only.

        ``meta`` is a 0-d unicode array of JSON text: ``format``, ``model`` (the registry
        name), ``params`` (:meth:`get_params`) and ``learned`` (learned scalars); the other
        keys are the learned arrays. Save with ``np.savez(path, **model.to_state())``.
        """
        self._check_fitted()
        meta = {
            "format": STATE_FORMAT,
            "model": self.name,
            "params": self.get_params(),
            "learned": self._learned(),
        }
        arrays = self._arrays()
        if "meta" in arrays:  # pragma: no cover - a subclass bug, not a user's
            raise ValueError(f"{type(self).__name__}._arrays may not use the name 'meta'")
        return {"meta": np.asarray(_json_text(meta, f"{self.name}: the model")), **arrays}

    @classmethod
    def _registry(cls) -> Mapping[str, type[Estimator]]:
        """The classes :meth:`from_state` may build, by registry name."""
        return {cls.name: cls} if cls.name else {}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Self:
        """The model :meth:`to_state` described (``state`` may be an open ``np.load`` file).

        Called on a family's base class, the class is read from the state; called on a
        model's class, the state must be of that model.
        """
        try:
            meta = json.loads(str(np.asarray(state["meta"])[()]))
            name, params, learned = meta["model"], meta["params"], meta["learned"]
            newer = int(meta.get("format", 1)) > STATE_FORMAT
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise InputError(
                f"not a saved {cls.family} ({exc!r})", hint="train the model again"
            ) from None
        if newer:
            raise InputError(
                f"the saved {cls.family} {name!r} was written by a newer jingzhun",
                hint="upgrade jingzhun to load it",
            )
        klass = cls._registry().get(name)
        if klass is None or not issubclass(klass, cls):
            raise InputError(
                f"saved {cls.family} is {name!r}, not {cls.name or 'a known model'!r}",
                hint=f"load it with {klass.__name__ if klass else 'a newer jingzhun'}",
            )
        model = klass(**params)
        model._restore(learned, state)
        return model
