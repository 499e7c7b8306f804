"""The fleet's TUF repository over HTTP (fleet tokens): metadata and target files, as
`tuf.ngclient` asks for them. What they say is signed; the token only keeps strangers out."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from cloud.api.deps import ERRORS, Caller, require
from cloud.registry.tuf_repo import repo_dir

router = APIRouter(prefix="/tuf", tags=["updates"], responses=ERRORS)
METADATA = re.compile(r"^(\d+\.)?(root|targets|snapshot|timestamp)\.json$")


@router.get("/metadata/{name}", summary="TUF metadata (root versions, timestamp, snapshot, targets)")
def metadata(name: str, _: Caller = Depends(require("fleet"))) -> FileResponse:
    path = repo_dir() / "metadata" / name
    if not METADATA.match(name) or not path.is_file():
        raise HTTPException(404, f"no metadata {name}")
    return FileResponse(path, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/targets/{path:path}", summary="a signed target file, by its hash-prefixed name")
def target(path: str, _: Caller = Depends(require("fleet"))) -> FileResponse:
    base = (repo_dir() / "targets").resolve()
    full = (base / path).resolve()
    if base not in full.parents or not full.is_file():
        raise HTTPException(404, f"no target {path}")
    return FileResponse(full, media_type="application/octet-stream")
