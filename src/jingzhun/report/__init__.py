"""The HTML report: every stage's tables and charts in one self-contained file.

Importing this package registers every stage's sections (each ``*_sections`` module adds its
own with :func:`section`); :func:`build_report` renders them.
"""

from jingzhun.report import (  # noqa: F401 - importing them registers their sections
    campaign_sections,
    predict_sections,
    profile_sections,
    recommend_sections,
    sections,
    segment_sections,
)
from jingzhun.report.html import build_report
from jingzhun.report.registry import SECTIONS, Section, section

__all__ = ["SECTIONS", "Section", "build_report", "section"]
