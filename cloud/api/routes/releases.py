"""Model releases and their rollout (cloud/registry/rollout.py): list and inspect for anyone with
a token; promote to the canary group, approve to the fleet, roll back: admins only."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import Deployment, ModelRelease
from cloud.registry import rollout

router = APIRouter(tags=["releases"], responses=ERRORS)


@router.get("/releases", summary="model releases")
def list_releases(session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    return [rollout.release_json(r) for r in session.scalars(select(ModelRelease).order_by(ModelRelease.id))]


def _run(step):
    try:
        return step()
    except rollout.RolloutError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except KeyError as exc:  # an online signing key missing from the environment
        raise HTTPException(503, f"cannot sign: {exc.args[0]}") from None


@router.get("/releases/{version}", summary="one release, its files and its rollout")
def get_release(version: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> dict:
    return rollout.release_json(_run(lambda: rollout.get_release(session, version)))


@router.get("/releases/{version}/health", summary="the canary's health: alerts, reviews, false alarms")
def release_health(version: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> dict:
    return _run(lambda: rollout.health(session, version))


class Promotion(BaseModel):
    group: Literal["canary", "fleet"] = "canary"


@router.post("/releases/{version}/promote", summary="sign the release for a group (admin)")
def promote(version: str, body: Promotion, session: Session = Depends(db),
            caller: Caller = Depends(require("admin"))) -> dict:
    d = _run(lambda: rollout.promote(session, version, body.group, caller.name))
    session.commit()
    return {"version": version, "group": d.target, "status": d.status}


@router.post("/releases/{version}/approve", summary="after the canary: the fleet (admin); shows the canary's health")
def approve(version: str, session: Session = Depends(db), caller: Caller = Depends(require("admin"))) -> dict:
    seen = _run(lambda: rollout.health(session, version))
    d = _run(lambda: rollout.promote(session, version, "fleet", caller.name))
    session.commit()
    return {"version": version, "group": d.target, "status": d.status, "canary_health": seen}


class Rollback(BaseModel):
    group: Literal["canary", "fleet"]
    to: str = Field(max_length=64, description="the release to go back to")


@router.post("/rollback", summary="sign an older release for a group again (admin)")
def roll_back(body: Rollback, session: Session = Depends(db), caller: Caller = Depends(require("admin"))) -> dict:
    d = _run(lambda: rollout.rollback(session, body.group, body.to, caller.name))
    session.commit()
    return {"version": body.to, "group": d.target, "status": d.status}


@router.get("/deployments", summary="which release is signed for which group, and which each drone runs "
            "(from its status reports)")
def list_deployments(session: Session = Depends(db), _: Caller = Depends(require("any"))) -> list[dict]:
    versions = dict(session.execute(select(ModelRelease.id, ModelRelease.version)).all())
    return [{"release_id": d.release_id, "version": versions.get(d.release_id), "target": d.target,
             "kind": "group" if d.target in rollout.GROUPS else "drone", "status": d.status, "at": d.at.isoformat(),
             "report": d.report}
            for d in session.scalars(select(Deployment).order_by(Deployment.id))]
