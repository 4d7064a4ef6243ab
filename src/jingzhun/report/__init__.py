"""The HTML report: every stage's tables and charts in one self-contained file."""

from jingzhun.report.html import SECTIONS, Section, build_report, section

__all__ = ["SECTIONS", "Section", "build_report", "section"]
