"""Content-addressed blobs: streamed single-request uploads and resumable chunked uploads."""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, insert, select, update

from . import db
from .app import BINARY_LIMIT
from .auth import User, authenticate
from .storage import check_sha

router = APIRouter()


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    size: int = Field(ge=0, le=1 << 50)


@router.head("/blobs/{sha256}")
def head_blob(sha256: str, request: Request, user: User = Depends(authenticate)) -> Response:
    return Response(status_code=200 if request.app.state.store.has(sha256) else 404)


@router.put("/blobs/{sha256}")
async def put_blob(sha256: str, request: Request, response: Response,
                   user: User = Depends(authenticate)) -> dict[str, str]:
    created = await request.app.state.store.put_stream(check_sha(sha256), request.stream(),
                                                       BINARY_LIMIT)
    response.status_code = 201 if created else 200
    return {"sha256": sha256}


def _upload(request: Request, user: User, upload_id: str) -> Any:
    row = None
    try:
        uuid.UUID(upload_id)
    except ValueError:
        pass
    else:
        with request.app.state.engine.connect() as conn:
            row = conn.execute(select(db.uploads).where(and_(
                db.uploads.c.id == upload_id, db.uploads.c.user_id == user.id))).first()
    if row is None:
        raise HTTPException(404, f"upload {upload_id!r} not found")
    return row


def _state(row: Any) -> dict[str, Any]:
    return {"upload_id": row.id, "offset": row.offset, "size": row.size, "sha256": row.sha256}


@router.post("/uploads", status_code=201)
def create_upload(body: UploadCreate, request: Request,
                  user: User = Depends(authenticate)) -> dict[str, Any]:
    sha = check_sha(body.sha256)
    with request.app.state.engine.connect() as conn:  # an interrupted upload resumes
        row = conn.execute(select(db.uploads).where(and_(
            db.uploads.c.user_id == user.id, db.uploads.c.sha256 == sha,
            db.uploads.c.size == body.size)).order_by(db.uploads.c.offset.desc())).first()
    if row is not None:
        return {"upload_id": row.id, "offset": row.offset}
    upload_id = str(uuid.uuid4())
    request.app.state.store.upload_part(upload_id).write_bytes(b"")
    with request.app.state.engine.begin() as conn:
        conn.execute(insert(db.uploads).values(id=upload_id, user_id=user.id, sha256=sha,
                                               size=body.size, offset=0, created_at=db.now()))
    return {"upload_id": upload_id, "offset": 0}


@router.get("/uploads/{upload_id}")
def read_upload(upload_id: str, request: Request,
                user: User = Depends(authenticate)) -> dict[str, Any]:
    return _state(_upload(request, user, upload_id))


@router.put("/uploads/{upload_id}")
async def put_chunk(upload_id: str, request: Request, offset: int = Query(ge=0),
                    user: User = Depends(authenticate)) -> Any:
    row = _upload(request, user, upload_id)
    if offset != row.offset:
        return _conflict(row.offset, offset)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > BINARY_LIMIT:
            raise HTTPException(413, f"request body over the limit of {BINARY_LIMIT} bytes")
    new = offset + len(body)
    if new > row.size:
        raise HTTPException(400, f"chunk ends at {new}, past the upload's size {row.size}")
    with request.app.state.engine.begin() as conn:
        done = conn.execute(update(db.uploads).where(and_(
            db.uploads.c.id == upload_id, db.uploads.c.offset == offset)).values(offset=new)) \
            .rowcount
        if done != 1:
            cur = conn.execute(select(db.uploads.c.offset).where(
                db.uploads.c.id == upload_id)).scalar()
            return _conflict(int(cur or 0), offset)
        # written before the commit: the offset only advances over bytes that are on disk
        fd = os.open(request.app.state.store.upload_part(upload_id), os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            os.pwrite(fd, bytes(body), offset)
        finally:
            os.close(fd)
    return {"offset": new}


def _conflict(have: int, offset: int) -> Response:
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": f"offset {offset} is not the upload's offset {have}",
                         "offset": have}, status_code=409)


@router.post("/uploads/{upload_id}/complete", status_code=201)
def complete_upload(upload_id: str, request: Request,
                    user: User = Depends(authenticate)) -> dict[str, str]:
    row = _upload(request, user, upload_id)
    request.app.state.store.complete(upload_id, row.sha256, row.size)
    with request.app.state.engine.begin() as conn:
        conn.execute(delete(db.uploads).where(db.uploads.c.id == upload_id))
    return {"sha256": row.sha256}
