"""Jobs on the queue (huey runs them; the database records them)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import Job

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)


def job_json(j: Job) -> dict:
    return {"id": j.id, "kind": j.kind, "status": j.status, "args": j.args, "result": j.result, "error": j.error,
            "created_at": j.created_at.isoformat(),
            "started_at": j.started_at.isoformat() if j.started_at else None,
            "finished_at": j.finished_at.isoformat() if j.finished_at else None}


@router.get("", summary="jobs, newest first")
def list_jobs(status: Literal["queued", "running", "done", "failed"] | None = None,
              limit: int = Query(100, ge=1, le=1000), session: Session = Depends(db),
              _: Caller = Depends(require("any"))) -> list[dict]:
    q = select(Job)
    if status is not None:
        q = q.where(Job.status == status)
    return [job_json(j) for j in session.scalars(q.order_by(Job.created_at.desc()).limit(limit))]


@router.get("/{job_id}", summary="one job")
def get_job(job_id: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> dict:
    j = session.get(Job, job_id)
    if j is None:
        raise HTTPException(404, f"no job {job_id}")
    return job_json(j)
