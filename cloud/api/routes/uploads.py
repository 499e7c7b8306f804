"""A flight's files after landing (cloud/uploads.py): the manifest, chunks, and the stored files,
served only to a logged-in operator or a valid token."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cloud import uploads
from cloud.api.deps import ERRORS, Caller, FlightId, db, require
from cloud.api.limits import CHUNK
from cloud.models import Alert, Flight, Image, Upload
from cloud.storage import store

router = APIRouter(tags=["uploads"], responses=ERRORS)
MAX_CHUNK = CHUNK
MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".json": "application/json",
         ".csv": "text/csv", ".srt": "text/plain", ".txt": "text/plain"}


class FileEntry(BaseModel):
    name: str = Field(max_length=255)
    size: int = Field(ge=0, le=uploads.MAX_FILE)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    kind: str = Field("other", pattern="^(photo|telemetry|manifest|other)$")


class Manifest(BaseModel):
    drone_id: str = Field(max_length=32)
    files: list[FileEntry] = Field(max_length=100_000)


def _fail(exc: uploads.UploadError):
    raise HTTPException(exc.status, str(exc)) from None


@router.post("/flights/{flight_id}/manifest", summary="declare a flight's files; answers what the cloud holds")
def post_manifest(manifest: Manifest, flight_id: FlightId, session: Session = Depends(db),
                  caller: Caller = Depends(require("fleet"))) -> dict:
    caller.check_drone(session, manifest.drone_id)
    try:
        states = uploads.declare(session, flight_id, manifest.drone_id, [f.model_dump() for f in manifest.files])
        uploads.store_manifest(session, flight_id, json.dumps(manifest.model_dump(), indent=1).encode())
    except uploads.UploadError as exc:
        _fail(exc)
    session.commit()
    return {"flight_id": flight_id, "files": states}


@router.put("/flights/{flight_id}/files/{name:path}", summary="a chunk of a declared file, at `offset`")
async def put_chunk(request: Request, flight_id: FlightId, name: str, offset: int = Query(ge=0, le=uploads.MAX_FILE),
                    session: Session = Depends(db), caller: Caller = Depends(require("fleet"))) -> dict:
    if int(request.headers.get("content-length") or 0) > MAX_CHUNK:
        raise HTTPException(413, f"a chunk is at most {MAX_CHUNK} bytes")
    parts, size = [], 0
    async for part in request.stream():  # bounded even when no Content-Length was sent
        size += len(part)
        if size > MAX_CHUNK:
            raise HTTPException(413, f"a chunk is at most {MAX_CHUNK} bytes")
        parts.append(part)
    chunk = b"".join(parts)

    def work() -> dict:
        flight = session.get(Flight, flight_id)
        if flight is None:
            raise HTTPException(404, f"no flight {flight_id}: declare its manifest first")
        caller.check_drone(session, flight.drone_id)
        try:
            state = uploads.receive(session, flight_id, name, offset, chunk)
        except uploads.UploadError as exc:
            session.rollback()
            _fail(exc)
        session.commit()
        return state

    return await run_in_threadpool(work)


@router.get("/flights/{flight_id}/uploads", summary="the flight's declared files and their state")
def list_uploads(flight_id: FlightId, session: Session = Depends(db),
                 _: Caller = Depends(require("any"))) -> list[dict]:
    rows = session.scalars(select(Upload).where(Upload.flight_id == flight_id).order_by(Upload.name))
    return [{"name": u.name, "kind": u.kind, "size": u.size, "sha256": u.sha256, "status": u.status} for u in rows]


def _stream(key: str, name: str) -> StreamingResponse:
    media = MEDIA.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    return StreamingResponse(store().stream(key), media_type=media,
                             headers={"Cache-Control": "private, max-age=3600"})


@router.get("/flights/{flight_id}/files/{name:path}", summary="a stored file of the flight (a photo: the original)")
def get_file(flight_id: FlightId, name: str, session: Session = Depends(db),
             _: Caller = Depends(require("any"))) -> StreamingResponse:
    row = session.scalar(select(Upload).where(Upload.flight_id == flight_id, Upload.name == name))
    if row is None or row.status != "stored":
        raise HTTPException(404, f"no stored file {name} in flight {flight_id}")
    return _stream(row.key, name)


@router.get("/alerts/{alert_id}/crop.jpg", summary="the alert's crop (the thumbnail the drone sent)")
def get_crop(alert_id: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> Response:
    row = session.get(Alert, alert_id)
    if row is None or not row.thumbnail:
        raise HTTPException(404, f"no crop for alert {alert_id}")
    return Response(row.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/alerts/{alert_id}/photo", summary="the full-resolution photo the alert was taken from")
def get_photo(alert_id: str, session: Session = Depends(db), _: Caller = Depends(require("any"))) -> StreamingResponse:
    row = session.get(Alert, alert_id)
    image = session.get(Image, row.image_id) if row is not None and row.image_id else None
    if image is None or not image.key:
        raise HTTPException(404, f"no photo uploaded for alert {alert_id}")
    return _stream(image.key, image.name)
