"""Campaigns and the choice of what operators label in them (run as jobs on the queue)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

import cloud.pseudo_labels
import cloud.selection_job  # noqa: F401 - registers the `select` job
from cloud.api.deps import ERRORS, Caller, db, require
from cloud.jobs import enqueue
from cloud.models import Campaign
from cloud.selection import DEFAULT_STRATEGY, STRATEGIES

router = APIRouter(prefix="/campaigns", tags=["campaigns"], responses=ERRORS)


@router.get("", summary="campaigns and their frozen test sets")
def list_campaigns(session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    return [{"name": c.name, "class_list_version": c.class_list_version, "test_photos": len(c.test_set or []),
             "frozen_at": c.frozen_at.isoformat() if c.frozen_at else None, "description": c.description}
            for c in session.scalars(select(Campaign).order_by(Campaign.id))]


class Selection(BaseModel):
    budget: int = Field(ge=1, le=100_000)
    strategy: Literal[STRATEGIES] = DEFAULT_STRATEGY  # type: ignore[valid-type]
    seed: int = Field(0, ge=0, le=2**31)
    project: int | None = Field(None, ge=1, description="Label Studio project to put the tasks in")
    cloud_url: str | None = Field(None, max_length=512, description="the cloud as Label Studio reaches it")
    missed: int | None = Field(None, ge=0, le=100_000, description="'missed fault' review tasks (default budget/5)")


@router.post("/{name}/select", summary="queue the choice of photos to label (operator)", status_code=202)
def queue_selection(name: str, body: Selection, session: Session = Depends(db),
                    _: Caller = Depends(require("operator"))) -> dict:
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is None:
        raise HTTPException(404, f"no campaign {name}")
    return {"job": enqueue("select", campaign=name, **body.model_dump())}


class PseudoLabelling(BaseModel):
    labelled: list[str] = Field(default_factory=list, max_length=100_000,
                                description="photos that keep their true labels (a selection's images)")
    project: int | None = Field(None, ge=1, description="Label Studio project for the pseudo-labelled photos")
    cloud_url: str | None = Field(None, max_length=512, description="the cloud as Label Studio reaches it")


@router.post("/{name}/pseudo-label", summary="queue weak labels for the unlabelled photos (operator)",
             status_code=202)
def queue_pseudo_labels(name: str, body: PseudoLabelling, session: Session = Depends(db),
                        _: Caller = Depends(require("operator"))) -> dict:
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is None:
        raise HTTPException(404, f"no campaign {name}")
    return {"job": enqueue("pseudo_label", campaign=name, **body.model_dump())}
