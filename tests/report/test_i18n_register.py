"""One string table for the report and the dashboard: a key may be registered again only with
the same words, so no page can change what another says."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import jingzhun
from jingzhun.report.i18n import Translator, register


def test_every_module_s_strings_fit_in_one_table() -> None:
    for m in pkgutil.walk_packages(jingzhun.__path__, "jingzhun."):
        if m.name != "jingzhun.__main__":
            importlib.import_module(m.name)  # a clash raises here
    assert Translator("zh")("web_cohorts") != Translator("zh")("cohorts")


def test_a_key_registered_again_with_other_words_is_refused() -> None:
    register({"users": Translator.__call__.__globals__["_STRINGS"]["users"]})  # same words: fine
    with pytest.raises(ValueError, match="users"):
        register({"users": ("People", "人")})
    assert Translator("en")("users") == "Users"
