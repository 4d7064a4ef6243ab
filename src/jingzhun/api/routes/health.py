"""Operations: liveness, readiness and Prometheus metrics (no key: scrapers and load
balancers call these; they say nothing about the data)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jingzhun.api.deps import State
from jingzhun.api.problems import Problem
from jingzhun.api.schemas import ResponseModel

router = APIRouter(tags=["operations"])


class Health(ResponseModel):
    status: str
    version: str
    uptime_seconds: float


class Ready(ResponseModel):
    status: str
    schema_version: int
    write_queue: int


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz(state: State) -> Health:
    import time

    from jingzhun import __version__

    return Health(status="ok", version=__version__, uptime_seconds=time.time() - state.started)


@router.get("/readyz", response_model=Ready, summary="The store answers and the writer runs")
def readyz(state: State) -> Ready:
    if not state.ready:
        raise Problem(503, "the server is shutting down")
    try:
        version = state.readers.get().store.schema_version()
    except Exception as exc:  # the store does not answer
        raise Problem(503, f"the store does not answer: {str(exc).splitlines()[0][:200]}") from exc
    return Ready(status="ready", schema_version=version, write_queue=state.writer.depth)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
