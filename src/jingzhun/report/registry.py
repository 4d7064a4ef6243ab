"""The report's sections: what a section is, and the registry stages add theirs to.

A section is a function of the Workspace and a :class:`~jingzhun.report.i18n.Translator` that
returns a :class:`Section`, or ``None`` when it has nothing to show (an empty store, a stage
not yet run). Each stage's ``report/*_sections.py`` registers its own with
:func:`section`; importing :mod:`jingzhun.report` imports them all, and
:func:`~jingzhun.report.html.build_report` renders them in order.

Examples
--------
>>> @section(990)
... def closing(ws, t):
...     return Section("closing", "Closing", "<p>…</p>")
>>> (990, closing) in SECTIONS
True
>>> SECTIONS.remove((990, closing))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jingzhun.report.i18n import Translator

if TYPE_CHECKING:
    from jingzhun.workspace import Workspace

__all__ = ["SECTIONS", "Section", "SectionFn", "section"]


@dataclass
class Section:
    """One part of the report: a key (its anchor), a title and its HTML body."""

    key: str
    title: str
    body: str


SectionFn = Callable[["Workspace", Translator], Section | None]

#: The report's sections with their place in it. Stages add theirs with @section(order).
SECTIONS: list[tuple[int, SectionFn]] = []


def section(order: int) -> Callable[[SectionFn], SectionFn]:
    """Register a report section at ``order`` (stages use 10s: collect 10-50, profile 60-70 …)."""

    def register(fn: SectionFn) -> SectionFn:
        SECTIONS.append((order, fn))
        return fn

    return register
