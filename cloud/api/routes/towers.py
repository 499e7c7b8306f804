"""Towers and lines of the asset register (imported with `pli cloud towers import`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api.deps import ERRORS, Caller, db, require
from cloud.models import Tower

router = APIRouter(prefix="/towers", tags=["towers"], responses=ERRORS)


@router.get("", summary="towers, by line and order")
def list_towers(line: str | None = Query(None, max_length=64), session: Session = Depends(db),
                _: Caller = Depends(require("any"))) -> list[dict]:
    q = select(Tower)
    if line is not None:
        q = q.where(Tower.line_id == line)
    return [{"line_id": t.line_id, "tower_id": t.tower_id, "order": t.order, "lat": t.lat, "lon": t.lon}
            for t in session.scalars(q.order_by(Tower.line_id, Tower.order))]
