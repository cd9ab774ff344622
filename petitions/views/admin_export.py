"""The CSV export of a petition's signatures, streamed (the same file as `petitions export`)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import audit
from ..db import raw_connection
from ..export import ExportFilter, file_name, parse_bom, stream_csv
from ..fields import BadValue
from .admin_base import admin_page, load_petition


@admin_page()
async def export_csv(request: Request) -> Response:
    petition = await load_petition(request)
    try:
        filters = ExportFilter.parse(request.query_params)
    except BadValue as error:
        raise HTTPException(400, str(error)) from None
    db = request.app.state.db
    async with raw_connection(db) as conn:
        await audit.record(
            conn, request.state.admin.id, "signatures.export", petition_id=petition.id,
            details={"status": filters.status or "all", "kind": filters.kind,
                     "country": filters.country, "since": filters.since},
        )  # fmt: skip
    name = file_name(petition.slug, filters, datetime.now(UTC))
    return StreamingResponse(
        stream_csv(
            db,
            petition.id,
            filters,
            bom=parse_bom(request.query_params.get("bom")),
            cipher=request.app.state.cipher,
        ),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
