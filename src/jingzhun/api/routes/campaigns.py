"""``/v1/campaigns``: campaigns on the server (admin keys) — what the CLI's ``campaign``
commands do, shaped for the dashboard: a live audience size while a spec is edited, the list,
one campaign, a preview, a send (a job), the report.

A spec comes as JSON with the TOML file's structure; each variant's template text is in
``body`` (a request names no file on the server).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, status
from pydantic import ConfigDict, Field

from jingzhun.api.deps import State, require
from jingzhun.api.routes.jobs import JobOut
from jingzhun.api.schemas import ResponseModel

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], dependencies=[require("admin")])

Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="A campaign's name.",
    ),
]
Lang = Annotated[
    Literal["en", "zh"], Query(description="Language of rendered content and reasons.")
]
Spec = Annotated[
    dict[str, Any], Body(description="A campaign spec: the TOML file's structure as JSON.")
]


class CampaignOut(ResponseModel):
    name: str
    channel: str
    state: str = Field(description="draft, sending or sent")
    created_at: datetime
    snapshot_at: datetime | None
    sent_at: datetime | None
    spec: dict[str, Any]
    counts: dict[str, int] = Field(description="Deliveries by state.")


class CampaignList(ResponseModel):
    items: list[dict[str, Any]]


class AudienceOut(ResponseModel):
    """The audience a spec draws now: sizes after each step, arms, segments, variants."""

    campaign: str
    now: datetime
    matched: int
    steps: list[dict[str, Any]]
    members: int
    treatment: int
    control: int
    by_segment: list[dict[str, Any]]
    by_variant: list[dict[str, Any]]


class PreviewOut(ResponseModel):
    campaign: str
    audience: AudienceOut
    expected: dict[str, Any] | None
    samples: list[dict[str, Any]]


class ReportOut(ResponseModel):
    """``jingzhun campaign report --json``."""

    model_config = ConfigDict(extra="allow")
    campaign: str
    snapshot_at: datetime | None = Field(
        None, description="When the audience was drawn: members' windows start here."
    )


@router.get("", response_model=CampaignList, summary="Every campaign, newest first")
def list_campaigns(state: State) -> CampaignList:
    frame = state.readers.get().campaigns.list()
    return CampaignList(items=frame.astype(object).where(frame.notna(), None).to_dict("records"))


@router.post(
    "/audience",
    response_model=AudienceOut,
    summary="The audience a spec would draw now, without storing anything (a builder's live size)",
)
def audience(spec: Spec, state: State) -> AudienceOut:
    return AudienceOut(**state.readers.get().campaigns.audience(spec).to_dict())


@router.post(
    "", response_model=CampaignOut, status_code=status.HTTP_201_CREATED, summary="Store a campaign"
)
async def create(
    spec: Spec,
    state: State,
    replace: Annotated[bool, Query(description="Replace a draft of the same name.")] = False,
) -> CampaignOut:
    info = await asyncio.wrap_future(
        state.run_write(lambda ws: ws.campaigns.create(spec, replace=replace))
    )
    return CampaignOut(**info.to_dict())


@router.get("/{name}", response_model=CampaignOut, summary="One campaign: spec, state, deliveries")
def show(name: Name, state: State) -> CampaignOut:
    return CampaignOut(**state.readers.get().campaigns.get(name).to_dict())


@router.get("/{name}/preview", response_model=PreviewOut, summary="What a send would do")
def preview(
    name: Name,
    state: State,
    sample: Annotated[int, Query(ge=0, le=100, description="Rendered messages to show.")] = 5,
    lang: Lang = "en",
) -> PreviewOut:
    return PreviewOut(
        **state.readers.get().campaigns.preview(name, sample=sample, lang=lang).to_dict()
    )


@router.post(
    "/{name}/send",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the campaign (a job: follow it at /v1/jobs/{job_id})",
)
def send(
    name: Name,
    state: State,
    request: Request,
    lang: Lang = "en",
    dry_run: Annotated[bool, Query(description="Draw and render; send and write nothing.")] = False,
) -> JobOut:
    state.readers.get().campaigns.spec(name)  # an unknown campaign is a 404 now, not a failed job
    from jingzhun.api.jobs import KINDS

    params = KINDS["campaign_send"][0](name=name, lang=lang, dry_run=dry_run)
    job = state.jobs.submit("campaign_send", params)
    return JobOut.of(job)


@router.get("/{name}/report", response_model=ReportOut, summary="What the campaign caused")
def report(name: Name, state: State) -> ReportOut:
    return ReportOut(**state.readers.get().evaluate.campaign(name).to_dict())
