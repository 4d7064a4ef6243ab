"""``/v1/jobs``: run what the CLI's write commands do, inside the server (admin keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field, ValidationError

from jingzhun.api.deps import State, require
from jingzhun.api.jobs import KINDS, Job
from jingzhun.api.problems import Problem
from jingzhun.api.schemas import ResponseModel

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[require("admin")])


class JobIn(BaseModel):
    kind: str = Field(description="One of: " + ", ".join(KINDS))
    params: dict[str, Any] = Field(default_factory=dict)


class JobOut(ResponseModel):
    job_id: str
    kind: str
    params: dict[str, Any]
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    progress: dict[str, Any] | None = Field(
        description="While it runs, where it is, when its stage says: {step, done, total}"
    )
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            **{k: getattr(job, k) for k in cls.model_fields},
        )


class JobList(ResponseModel):
    items: list[JobOut]


@router.post("", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Start a job")
def start(body: JobIn, state: State, request: Request) -> JobOut:
    if body.kind not in KINDS:
        raise Problem(422, f"kind {body.kind[:40]!r} is not a job; use one of: {', '.join(KINDS)}")
    model, _ = KINDS[body.kind]
    try:
        params = model.model_validate(body.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("params", *first["loc"]))
        raise Problem(
            422,
            f"{where}: {first['msg']}; {body.kind} takes: {', '.join(model.model_fields)}",
        ) from None
    return JobOut.of(state.jobs.submit(body.kind, params))


@router.get("", response_model=JobList, summary="Jobs, newest first")
def list_jobs(state: State) -> JobList:
    return JobList(items=[JobOut.of(j) for j in state.jobs.list()])


@router.get("/{job_id}", response_model=JobOut, summary="One job: state, result or error")
def get(job_id: str, state: State) -> JobOut:
    return JobOut.of(state.jobs.get(job_id))
