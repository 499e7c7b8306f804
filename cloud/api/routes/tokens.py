"""API tokens (admin only): make one (shown once), list them, revoke one."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import ApiToken
from cloud.tokens import create_token, forget

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=ERRORS)


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["operator", "fleet", "admin"]
    fleet: str | None = Field(None, max_length=32, description="a fleet token's fleet (required for role fleet)")
    drone: str | None = Field(None, max_length=32, description="makes it one drone's token")


@router.post("", status_code=201, summary="a new token; the response is the only time it is shown")
def new_token(body: NewToken, session: Session = Depends(db), _: Caller = Depends(require("admin"))) -> dict:
    try:
        token = create_token(session, body.name, body.role, body.fleet, body.drone)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    session.commit()
    return {"name": body.name, "role": body.role, "fleet": body.fleet, "drone": body.drone, "token": token}


@router.get("", summary="tokens (names and roles, never the tokens)")
def list_tokens(session: Session = Depends(db), _: Caller = Depends(require("admin"))) -> list[dict]:
    return [{"id": t.id, "name": t.name, "role": t.role, "fleet": t.fleet, "drone": t.drone, "revoked": t.revoked,
             "created_at": t.created_at.isoformat()}
            for t in session.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.delete("/{token_id}", summary="revoke a token")
def revoke(token_id: int = Path(ge=1, le=2**31 - 1), session: Session = Depends(db),
           _: Caller = Depends(require("admin"))) -> dict:
    t = session.get(ApiToken, token_id)
    if t is None:
        raise HTTPException(404, f"no token {token_id}")
    t.revoked = True
    session.commit()
    forget(t.token_hash)
    return {"id": t.id, "revoked": True}
