"""Model releases and deployments (read-only until the registry lands)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import Deployment, ModelRelease

router = APIRouter(tags=["releases"], responses=ERRORS)


@router.get("/releases", summary="model releases")
def list_releases(session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    return [{"version": r.version, "class_list_version": r.class_list_version, "sha256": r.sha256,
             "created_at": r.created_at.isoformat()}
            for r in session.scalars(select(ModelRelease).order_by(ModelRelease.id))]


@router.get("/deployments", summary="which release runs where")
def list_deployments(session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    return [{"release_id": d.release_id, "target": d.target, "status": d.status, "at": d.at.isoformat()}
            for d in session.scalars(select(Deployment).order_by(Deployment.id))]
