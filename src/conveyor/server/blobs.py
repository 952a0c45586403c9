"""Uploads by digest: which files the platform lacks, and one file's bytes.

The content-addressing rules (hash as the bytes arrive, refuse a mismatch or
an oversized body, never leave a partial blob, repair a damaged copy) live in
the artifact store; this module only speaks HTTP.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import Field

from conveyor.server._common import DIGEST, Strict
from conveyor.store.blobs import BlobStore

__all__ = ["MAX_BLOB", "routes"]

#: Largest single uploaded file.
MAX_BLOB = 1024 * 1024 * 1024


class MissingIn(Strict):
    digests: list[Annotated[str, Field(pattern=DIGEST)]] = Field(max_length=100_000)


def routes(store: BlobStore) -> APIRouter:
    api = APIRouter(tags=["uploads"])

    @api.post("/v1/blobs/missing", summary="Which of these file digests the platform lacks")
    async def missing(body: MissingIn) -> dict[str, list[str]]:
        return {"missing": [d for d in dict.fromkeys(body.digests) if not store.exists(d)]}

    @api.put("/v1/blobs/{digest}", status_code=201, summary="Upload one file by its digest")
    async def put_blob(
        request: Request, digest: Annotated[str, Path(pattern=DIGEST)]
    ) -> dict[str, str]:
        # Stored even when present: a damaged copy is replaced by the good bytes.
        stored = await store.put_stream_async(request.stream(), digest, limit=MAX_BLOB)
        return {"digest": stored}

    return api
