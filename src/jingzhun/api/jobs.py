"""Jobs: the long writes (builds, training, scoring) run inside the server, one at a time.

A job runs in a thread of its own over a connection of its own, so requests keep being
answered and tracking keeps being written while it runs; DuckDB's transactions keep what it
writes invisible until it finishes. Readers pick up models a job activates on their next
request (the serving caches check the registry on every call).

Each kind's parameters are a pydantic model that forbids unknown fields, so a typo in
``params`` is a 422 naming the field, before the job is queued.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jingzhun.api.schemas import UtcTimestampIn
from jingzhun.errors import JingzhunError, NotFoundError
from jingzhun.workspace import Workspace

log = logging.getLogger("jingzhun.server")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileBuild(_Params):
    as_of: UtcTimestampIn | None = Field(None, description="Build as of this time (default: now).")


class SegmentRun(_Params):
    method: Literal["rfm", "kmeans", "hierarchical", "dbscan", "hdbscan", "gmm", "som"] = "kmeans"
    name: str | None = Field(None, max_length=64)
    k: Annotated[int, Field(ge=2, le=1000)] | Literal["auto"] | None = Field(
        "auto", description="Segments, or auto."
    )
    features: list[str] | None = Field(None, max_length=200)
    random_state: int = Field(0, ge=0, le=2**32 - 1)


class RecommendTrain(_Params):
    model: str | None = Field(None, max_length=64, description="Default: [recommend] model.")
    params: dict[str, float | int | str] | None = None
    as_of: UtcTimestampIn | None = None


class RecommendBatch(_Params):
    k: int | None = Field(None, ge=1, le=1000)
    model: str | None = Field(None, max_length=64)


class PredictTrain(_Params):
    target: Literal["propensity", "churn"] = "propensity"
    horizon_days: float | None = Field(None, gt=0, le=3650)
    as_of: UtcTimestampIn | None = None


class PredictScore(_Params):
    target: Literal["propensity", "churn", "uplift"] = "propensity"
    model: str | None = Field(None, max_length=64)
    as_of: UtcTimestampIn | None = None


class PredictClv(_Params):
    model: Literal["bgnbd", "pareto"] = "bgnbd"
    unit: Literal["day", "week", "month"] = "week"
    as_of: UtcTimestampIn | None = None


class CampaignSend(_Params):
    name: str = Field(min_length=1, max_length=64, description="The campaign to send.")
    lang: Literal["en", "zh"] = "en"
    dry_run: bool = False


def _result(value: Any) -> dict[str, Any]:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, int):
        return {"rows": value}
    return {"result": str(value)}


class Progress:
    """Where a running job is, as the stage it runs reports it: a step's name, or a count
    of what is done out of a total. Read by ``GET /v1/jobs/{id}``."""

    def __init__(self) -> None:
        self.step: str | None = None
        self.done: int | None = None
        self.total: int | None = None

    def say(self, step: str) -> None:
        """A stage's step (predict training: which model it fits)."""
        self.step = str(step)[:200]

    def count(self, done: int, total: int | None) -> None:
        """A stage's count (a recommendation batch: users scored of all)."""
        self.done, self.total = int(done), None if total is None else int(total)

    def as_dict(self) -> dict[str, Any] | None:
        if self.step is None and self.done is None:
            return None
        return {"step": self.step, "done": self.done, "total": self.total}


#: Every job kind: its parameters and what it runs on the job's workspace (with the job's
#: progress, for the stages that report it).
KINDS: dict[str, tuple[type[_Params], Callable[[Workspace, Any, Progress], Any]]] = {
    "profile_build": (ProfileBuild, lambda ws, p, _: ws.profiles.build(p.as_of)),
    "segment_run": (
        SegmentRun,
        lambda ws, p, _: ws.segments.run(
            p.method, name=p.name, k=p.k, features=p.features, random_state=p.random_state
        ),
    ),
    "recommend_train": (
        RecommendTrain,
        lambda ws, p, _: ws.recs.train(p.model, params=p.params, as_of=p.as_of),
    ),
    "recommend_batch": (
        RecommendBatch,
        lambda ws, p, progress: ws.recs.batch(p.k, model=p.model, progress=progress.count),
    ),
    "predict_train": (
        PredictTrain,
        lambda ws, p, progress: ws.predict.train(
            p.target, horizon_days=p.horizon_days, as_of=p.as_of, progress=progress.say
        ),
    ),
    "predict_score": (
        PredictScore,
        lambda ws, p, _: ws.predict.score(p.target, model=p.model, as_of=p.as_of),
    ),
    "predict_clv": (
        PredictClv,
        lambda ws, p, _: ws.predict.clv(model=p.model, unit=p.unit, as_of=p.as_of),
    ),
    "campaign_send": (
        CampaignSend,
        lambda ws, p, progress: ws.campaigns.send(
            p.name, lang=p.lang, dry_run=p.dry_run, progress=progress.count
        ),
    ),
}

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass
class Job:
    job_id: str
    kind: str
    params: dict[str, Any]
    state: JobState = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    _parsed: Any = None
    _progress: Progress = field(default_factory=Progress)

    @property
    def progress(self) -> dict[str, Any] | None:
        return self._progress.as_dict()


class JobRunner:
    """One worker thread running queued jobs in order, on a workspace of its own."""

    def __init__(
        self,
        workspace: Callable[[], Workspace],
        *,
        on_done: Callable[[str, bool, float], None] | None = None,
        keep: int = 1000,
    ) -> None:
        self._workspace = workspace
        self._ws: Workspace | None = None
        self._on_done = on_done
        self._keep = keep
        self._jobs: dict[str, Job] = {}
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="jingzhun-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, params: _Params) -> Job:
        job = Job(
            job_id=f"j{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
            kind=kind,
            params=params.model_dump(mode="json", exclude_none=True),
            _parsed=params,
        )
        with self._lock:
            self._jobs[job.job_id] = job
            if len(self._jobs) > self._keep:  # forget the oldest finished ones
                for old in [j for j in self._jobs.values() if j.finished_at][
                    : len(self._jobs) - self._keep
                ]:
                    del self._jobs[old.job_id]
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id[:80]!r}", hint="list the jobs with GET /v1/jobs")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def stop(self, timeout: float | None = 5) -> None:
        """Cancel what has not started; let a running job finish if it does within
        ``timeout`` (its transaction is rolled back if the process ends first)."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state = "cancelled"
        self._queue.put(None)
        self._thread.join(timeout)
        if self._ws is not None and not self._thread.is_alive():
            self._ws.store.close()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.state == "cancelled":
                continue
            job.state, job.started_at = "running", datetime.now(UTC)
            started = time.perf_counter()
            result: dict[str, Any] | None = None
            error: str | None = None
            try:
                if self._ws is None:
                    self._ws = self._workspace()
                _, run = KINDS[job.kind]
                result = _result(run(self._ws, job._parsed, job._progress))
            except JingzhunError as exc:
                error = str(exc)
            except Exception as exc:  # a job's failure is its own; the runner goes on
                log.error("job %s (%s) failed:\n%s", job.job_id, job.kind, traceback.format_exc())
                error = (
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                )
            # The hook runs before the job is seen to finish: a client that saw "succeeded"
            # then gets what the job made (the server serves a new model from its hook).
            if self._on_done is not None:
                try:
                    self._on_done(job.kind, error is None, time.perf_counter() - started)
                except Exception:  # the hook's failure is logged; the job's outcome stands
                    log.error("after job %s:\n%s", job.job_id, traceback.format_exc())
            job.result, job.error = result, error
            job.seconds = time.perf_counter() - started
            job.finished_at = datetime.now(UTC)
            job.state = "succeeded" if error is None else "failed"
