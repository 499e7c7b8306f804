"""The learning loop's runs: queue one, read what each trained on, scored and decided."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

import cloud.learning  # noqa: F401 - registers the `learn` job
from cloud.api.deps import ERRORS, Caller, db, require
from cloud.jobs import enqueue
from cloud.models import Campaign, LearningRun

router = APIRouter(prefix="/learning", tags=["learning"], responses=ERRORS)


def run_json(r: LearningRun, full: bool = True) -> dict:
    doc = {"id": r.id, "campaign": r.campaign, "trigger": r.trigger, "status": r.status, "parent": r.parent,
           "release": r.release, "recipe": r.recipe, "decision": r.decision,
           "started_at": r.started_at.isoformat(), "finished_at": r.finished_at.isoformat() if r.finished_at else None}
    if full:
        doc |= {"data": r.data, "matrix": r.matrix, "curve": r.curve}
    return doc


@router.get("/runs", summary="learning runs, newest first")
def list_runs(limit: int = Query(100, ge=1, le=1000), session: Session = Depends(db),
              _: Caller = Depends(require("operator"))) -> list[dict]:
    return [run_json(r, full=False) | {"matrix": r.matrix}
            for r in session.scalars(select(LearningRun).order_by(LearningRun.id.desc()).limit(limit))]


@router.get("/runs/{run_id}", summary="one run: its data, recipe, mAP matrix, learning curve, gate decision")
def get_run(run_id: int = Path(ge=1, le=2**31 - 1), session: Session = Depends(db),
            _: Caller = Depends(require("operator"))) -> dict:
    r = session.get(LearningRun, run_id)
    if r is None:
        raise HTTPException(404, f"no learning run {run_id}")
    return run_json(r)


class RecipeIn(BaseModel):
    """Changes to the service's recipe (cloud/learning.py:Recipe); what is left out keeps its default."""

    epochs: int | None = Field(None, ge=1, le=500, description="default 10")
    imgsz: int | None = Field(None, ge=64, le=2048, multiple_of=32, description="default 640")
    batch: int | None = Field(None, ge=1, le=256, description="default 8")
    freeze: int | None = Field(None, ge=0, le=30, description="layers kept frozen (default 10: the backbone)")
    lr0: float | None = Field(None, gt=0, le=1, description="SGD's rate (default 0.002)")
    replay_repeat: int | None = Field(None, ge=1, le=10, description="times a small campaign's photos may be "
                                      "replayed to fill its share (default 2)")
    seed: int | None = Field(None, ge=0, le=2**31)


class LearnIn(BaseModel):
    campaign: str = Field(max_length=64)
    recipe: RecipeIn = Field(default_factory=RecipeIn)
    replay: int | None = Field(None, ge=0, le=100_000, description="photos of earlier campaigns replayed "
                               "(default 200)")
    labelled: list[str] | None = Field(None, max_length=100_000, description="the campaign's labelled photos")


@router.post("/runs", summary="queue a learning run (operator); a candidate that passes goes to the canary group",
             status_code=202)
def queue_run(body: LearnIn, session: Session = Depends(db), who: Caller = Depends(require("operator"))) -> dict:
    if session.scalar(select(Campaign.id).where(Campaign.name == body.campaign)) is None:
        raise HTTPException(404, f"no campaign {body.campaign}")
    return {"job": enqueue("learn", campaign=body.campaign, trigger=f"on demand ({who.name})",
                           recipe=body.recipe.model_dump(exclude_none=True), replay=body.replay,
                           labelled=body.labelled)}
