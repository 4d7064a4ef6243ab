"""``ws.evaluate``: what campaigns caused, with honest intervals.

Examples
--------
>>> with jingzhun.open("shop.duckdb") as ws:                            # doctest: +SKIP
...     r = ws.evaluate.campaign("spring-beauty")
...     r.conversion["lift"], r.conversion["ci_low"], r.conversion["ci_high"]
"""

from __future__ import annotations

from jingzhun.config import Settings
from jingzhun.evaluate.campaign import CampaignReport, Headline, headline, report
from jingzhun.store import Store


class Evaluate:
    """The evaluation stage over one store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def campaign(self, name: str, *, confidence: float = 0.95) -> CampaignReport:
        """The report of campaign ``name``: funnel, rates, lift with intervals (plain and
        CUPED), the sample-ratio check, variants (Holm), incremental profit and ROI."""
        return report(
            self.store, name, confidence=confidence, attribution=self.settings.tracking.attribution
        )

    def headline(self, name: str, *, confidence: float = 0.95) -> Headline:
        """Campaign ``name``'s conversion lift with its interval — the numbers of
        :meth:`campaign`'s ``conversion`` from one small query, for a list of campaigns."""
        return headline(self.store, name, confidence=confidence)


__all__ = ["Evaluate"]
