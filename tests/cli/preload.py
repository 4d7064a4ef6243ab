"""What the CLI tests' fork server imports once (see tests/cli/subprocess_cli.py): every
module of jingzhun, so a forked command finds the ones it needs already imported."""

from __future__ import annotations

import importlib
import pkgutil

import jingzhun

for module in pkgutil.walk_packages(jingzhun.__path__, "jingzhun."):
    if module.name != "jingzhun.__main__":
        importlib.import_module(module.name)
