"""One router per resource."""

from jingzhun.api.routes import (
    campaigns,
    consents,
    health,
    items,
    jobs,
    keys,
    links,
    models,
    privacy,
    quarantine,
    segments,
    tracking,
    users,
)

ROUTERS = [
    health.router,
    tracking.router,
    jobs.router,
    users.router,
    consents.router,
    items.router,
    segments.router,
    models.router,
    quarantine.router,
    keys.router,
    campaigns.router,
    links.router,
    privacy.router,
]
