"""Model names on the ground floor: settings check them without importing a stage."""

from __future__ import annotations

import pytest

from jingzhun.config import PredictSettings
from jingzhun.contracts.models import CLASSIFIERS
from jingzhun.errors import InputError
from jingzhun.predict import propensity


def test_the_propensity_stage_takes_its_classifier_names_from_the_contract() -> None:
    assert propensity.CLASSIFIERS is CLASSIFIERS


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_named_classifier_exists(name: str) -> None:
    assert propensity.Classifier(name).name == name


def test_a_name_outside_the_contract_is_no_classifier() -> None:
    with pytest.raises(InputError, match="classifier 'xgboost' is unknown"):
        propensity.Classifier("xgboost")


def test_settings_accept_exactly_the_named_classifiers() -> None:
    assert PredictSettings(models=list(CLASSIFIERS)).models == list(CLASSIFIERS)
    with pytest.raises(ValueError, match="unknown classifier 'xgboost'"):
        PredictSettings(models=["xgboost"])
