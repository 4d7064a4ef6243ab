"""docs/data-model.md lists the event vocabulary as the code defines it."""

from __future__ import annotations

import re
from pathlib import Path

from jingzhun.contracts.events import EVENT_TYPES

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-model.md"


def test_the_documented_vocabulary_is_the_codes() -> None:
    rows = re.findall(
        r"^\| `([a-z_]+)` \| ([^|]*) \| ([^|]*) \|", DOC.read_text(encoding="utf-8"), re.M
    )
    documented = {name: (segment.strip(), weight.strip()) for name, segment, weight in rows}
    assert list(documented) == [e.name for e in EVENT_TYPES]
    for e in EVENT_TYPES:
        assert documented[e.name] == (e.segment or "", f"{e.weight:g}" if e.weight else ""), e.name
