"""The dashboard's pages, one module each; :data:`PAGES` is what the dashboard serves."""

from jingzhun.web.pages import (
    campaigns,
    explore,
    jobs,
    models,
    overview,
    quarantine,
    segments,
    users,
)

PAGES = [
    overview.router,
    segments.router,
    users.router,
    explore.router,
    campaigns.router,
    models.router,
    jobs.router,
    quarantine.router,
]
