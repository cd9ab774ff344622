"""The transparency log's public answers: the signed head, leaves, proofs, receipts.

Nothing here names a signer: leaves hold a kind, an hour, a statement version and a
receipt commitment (log_format.py). Everything is served only up to the latest
signed head, so what anyone reads is covered by a signature (docs/integrity.md).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import merkle, transparency
from ..db import raw_connection
from ..i18n import _
from ..log_keys import TreeHead, log_key_for
from ..receipts import BadReceipt, Receipt
from .base import CORS, load_petition, petition_snapshot, read_form, render

ENTRIES_PAGE = 1000  # leaves a page when `end` is not given
MAX_ENTRIES_PAGE = 10_000
HEADS_PAGE = 1000
MAX_INDEX = 2**62


def _json(request: Request, data: dict, etag: str, max_age: int) -> Response:
    headers = {**CORS, "ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return JSONResponse(data, headers=headers)


def _whole_number(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise HTTPException(400, _("`%(name)s` is required.", name=name))
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) >= MAX_INDEX:
        raise HTTPException(400, _("`%(name)s` must be a whole number.", name=name))
    return int(raw)


async def _latest_head(request: Request, conn, petition_id: int, slug: str) -> TreeHead:
    """The latest signed head; a petition whose log has none yet gets its first now."""
    head = await transparency.latest_head(conn, petition_id)
    if head is None:
        settings = request.app.state.settings
        await transparency.sign_current_head(
            conn, log_key_for(settings), petition_id,
            transparency.origin_of(settings.base_url, slug),
        )  # fmt: skip
        head = await transparency.latest_head(conn, petition_id)
    return head


def _head_etag(head: TreeHead, what: str) -> str:
    return f'"{what}-{head.size}-{head.root.hex()[:16]}"'


async def log_json(request: Request) -> Response:
    petition = (await petition_snapshot(request)).petition
    async with raw_connection(request.app.state.db) as conn:
        head = await _latest_head(request, conn, petition.id, petition.slug)
    return _json(request, head.as_json(), _head_etag(head, "head"), 10)


async def heads_json(request: Request) -> Response:
    petition = (await petition_snapshot(request)).petition
    after = _whole_number(request, "after", 0) if "after" in request.query_params else -1
    async with raw_connection(request.app.state.db) as conn:
        heads = await transparency.heads_after(conn, petition.id, after, HEADS_PAGE)
    following = None
    if len(heads) == HEADS_PAGE:
        following = str(request.url.replace_query_params(after=heads[-1].size))
    last = heads[-1] if heads else None
    etag = f'"heads-{after}-{last.size if last else "none"}"'
    return _json(request, {"heads": [h.as_json() for h in heads], "next": following}, etag, 10)


async def entries_json(request: Request) -> Response:
    petition = (await petition_snapshot(request)).petition
    start = _whole_number(request, "start", 0)
    asked_end = _whole_number(request, "end", start + ENTRIES_PAGE)
    if asked_end < start:
        raise HTTPException(400, _("`end` must not be less than `start`."))
    async with raw_connection(request.app.state.db) as conn:
        head = await _latest_head(request, conn, petition.id, petition.slug)
        if start > head.size:
            raise HTTPException(
                400, _("The log has %(size)s leaves: `start` is past its end.", size=head.size)
            )
        end = min(asked_end, start + MAX_ENTRIES_PAGE, head.size)
        leaves = await transparency.leaves(conn, petition.id, start, end)
    following = None
    if end < head.size:
        following = str(request.url.replace_query_params(start=end, end=end + (end - start)))
    data = {
        "start": start,
        "end": end,
        "size": head.size,
        "entries": [leaf.as_json() for leaf in leaves],
        "next": following,
    }
    # A range the signed head covers never changes; the size and `next` may.
    return _json(request, data, f'"entries-{start}-{end}-{head.size}"', 60)


async def proof_json(request: Request) -> Response:
    petition = (await petition_snapshot(request)).petition
    index = _whole_number(request, "leaf")
    async with raw_connection(request.app.state.db) as conn:
        head = await _latest_head(request, conn, petition.id, petition.slug)
        size = _whole_number(request, "size", head.size)
        if not index < size <= head.size:
            raise HTTPException(
                400,
                _(
                    "`leaf` must be below `size`, and `size` at most the signed log's "
                    "%(size)s leaves.",
                    size=head.size,
                ),
            )
        leaf_hash, path = await transparency.inclusion_proof(conn, petition.id, index, size)
    data = {
        "leaf": index,
        "size": size,
        "leaf_hash": leaf_hash.hex(),
        "audit_path": [h.hex() for h in path],
    }
    return _json(request, data, f'"proof-{index}-{size}"', 3600)


async def consistency_json(request: Request) -> Response:
    petition = (await petition_snapshot(request)).petition
    first = _whole_number(request, "first")
    async with raw_connection(request.app.state.db) as conn:
        head = await _latest_head(request, conn, petition.id, petition.slug)
        second = _whole_number(request, "second", head.size)
        if not 0 < first <= second <= head.size:
            raise HTTPException(
                400,
                _(
                    "`first` must be at least 1 and at most `second`, and `second` at most "
                    "the signed log's %(size)s leaves.",
                    size=head.size,
                ),
            )
        proof = await transparency.consistency_proof(conn, petition.id, first, second)
    data = {"first": first, "second": second, "consistency": [h.hex() for h in proof]}
    return _json(request, data, f'"consistency-{first}-{second}"', 3600)


async def receipt_page(request: Request) -> Response:
    """A form to check a receipt; the link in the receipt email fills it from the part
    after `#` (never sent here). Checks a receipt posted, or given as `?receipt=`."""
    petition = await load_petition(request)
    if request.method == "POST":
        form = await read_form(request)
        text = form.get("receipt")
    else:
        text = request.query_params.get("receipt")
    context = {"petition": petition, "given": None, "check": None, "error": None}
    if isinstance(text, str) and text.strip():
        context["given"] = True
        try:
            receipt = Receipt.parse(text)
        except BadReceipt:
            context["error"] = _(
                "This is not a receipt: a receipt has 32 letters and digits, in groups of "
                "four. Copy it whole from the email."
            )
            return render(request, "receipt.html", context, 400)
        context.update(await check_receipt(request, petition.id, petition.slug, receipt))
    response = render(request, "receipt.html", context)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def check_receipt(request: Request, petition_id: int, slug: str, receipt: Receipt) -> dict:
    """Where the receipt's signature stands under the latest signed head, with the
    inclusion proof of its add leaf (checked here too, before it is shown)."""
    async with raw_connection(request.app.state.db) as conn:
        head = await _latest_head(request, conn, petition_id, slug)
        check = await transparency.find_receipt(conn, petition_id, receipt.commitment, head.size)
        if check is None:
            return {"head": head, "check": None}
        leaf_hash, path = await transparency.inclusion_proof(
            conn, petition_id, check.leaf.index, head.size
        )
    proven = merkle.verify_inclusion(leaf_hash, check.leaf.index, head.size, path, head.root)
    return {"head": head, "check": check, "proof": [h.hex() for h in path], "proven": proven}
