"""The names of the trainable models that settings and front ends may name.

The stages own the models; their names sit on the ground floor so that
:mod:`jingzhun.config` can check a ``jingzhun.toml`` without importing a stage. A stage takes
its names from here (``jingzhun.predict.propensity.CLASSIFIERS`` is this tuple), and
``tests/contracts/test_model_names.py`` holds each stage to them.

Examples
--------
>>> "lightgbm" in CLASSIFIERS
True
"""

from __future__ import annotations

__all__ = ["CLASSIFIERS"]

#: Propensity and churn classifiers (:mod:`jingzhun.predict.propensity`), in the order tables
#: show them.
CLASSIFIERS: tuple[str, ...] = ("logistic", "tree", "forest", "lightgbm", "mlp")
