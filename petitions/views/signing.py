"""Signing pages: the sign POST, thanks, and the links in emails (verify, withdraw, unsubscribe)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..fields import FieldErrors
from ..i18n import _, current_language
from ..locales import lang_url
from ..petitions import get_petition
from ..sign_limits import FormTokenSpent, OverCeiling
from ..signature import Status
from ..signing import (
    get_signature_state,
    parse_sign_form,
    resend_verification,
    submit_signature,
    unsubscribe,
    verify_signature,
    withdraw_signature,
)
from ..tokens import FORM_TOKEN_AGE, VERIFY_TOKEN_AGE, TokenExpired, TokenInvalid
from .base import load_petition, posted_from_here, read_form, render, render_petition_form

log = logging.getLogger(__name__)

SIGN_FIELDS = (
    "kind", "name", "email", "country", "city", "occupation", "organisation", "organisation_type",
    "website", "members", "comment", "display", "updates", "ref",
)  # fmt: skip
HONEYPOT_FIELD = "fax_number"
FORM_TOKEN_FIELD = "form_token"


async def sign(request: Request) -> Response:
    return await _sign(request, embedded=False)


async def sign_embedded(request: Request) -> Response:
    """The embed page's form: it posts to the embed page's own address."""
    return await _sign(request, embedded=True)


async def _sign(request: Request, embedded: bool) -> Response:
    """Check and store a signature; every valid submission gets the same answer.

    `embedded`: the form sat in the embed page (perhaps in an iframe on another
    site), so errors re-render that page and success returns to it.
    """
    petition = await load_petition(request)
    if not posted_from_here(request):
        raise HTTPException(
            403, _("This form was sent from another website. Sign on the petition page.")
        )
    form = await read_form(request)
    values = {k: v for k in SIGN_FIELDS if isinstance(v := form.get(k), str)}
    if embedded:
        done_url = lang_url(request.url_for("embed", slug=petition.slug), signed=1)
    else:
        done_url = lang_url(request.url_for("thanks", slug=petition.slug))
    # The form posts to ...#sign-errors so a rejected submit opens at its errors; a
    # Location without a fragment would inherit that one, so name where to land.
    done = RedirectResponse(f"{done_url}#main", status_code=303)

    async def again(errors: dict) -> Response:
        if embedded:
            return await render_petition_form(
                request, petition, values, errors, 400, template="embed.html", show_form=True
            )
        return await render_petition_form(request, petition, values, errors, 400)

    if form.get(HONEYPOT_FIELD):
        log.info("sign form honeypot filled on %s; nothing stored", petition.slug)
        return done
    if not petition.accepts_signatures:
        return render(
            request,
            "message.html",
            {
                "title": _("This petition is closed"),
                "paragraphs": [_("It no longer accepts signatures. Thank you for your support.")],
                "back": request.url_for("petition", slug=petition.slug),
            },
            403,
        )
    try:
        token = form.get(FORM_TOKEN_FIELD)
        form_token = request.app.state.tokens.read_form_token(
            token if isinstance(token, str) else "", max_age=FORM_TOKEN_AGE
        )
        if form_token.slug != petition.slug:
            raise TokenInvalid
    except TokenExpired:
        return await again(
            {"form": _("This form was open for a long time. Please check and send it again.")}
        )
    except TokenInvalid:
        return await again(
            {"form": _("This form could not be checked. Please send it again from this page.")}
        )

    try:
        signer = parse_sign_form(values, petition)
    except FieldErrors as error:
        return await again(error.errors)

    client = request.client.host if request.client else None
    try:
        await submit_signature(
            request.app.state.db, request.app.state.mailer, petition, signer, client,
            form_token_id=form_token.id,
        )  # fmt: skip
    except FormTokenSpent:
        spent = _("This form was already sent several times. Check it and send it again.")
        return await again({"form": spent})
    except OverCeiling as refused:
        return _too_many(request, petition, refused.retry_after)
    return done


def _too_many(request: Request, petition, retry_after: int) -> Response:
    """Far more signatures than any group of people makes in an hour: refused, nothing kept."""
    response = render(
        request,
        "message.html",
        {
            "title": _("Too many signatures at once"),
            "paragraphs": [
                _(
                    "This petition has received far more signatures from your network or "
                    "your email provider in the last hour than people usually send. Nothing "
                    "was stored. Please try again later."
                )
            ],
            "back": request.url_for("petition", slug=petition.slug),
        },
        429,
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


async def thanks(request: Request) -> Response:
    petition = await load_petition(request)
    return render(request, "thanks.html", {"petition": petition})


async def _verified_page(request: Request, state) -> Response:
    """Where a confirmation link leads; a confirmed signer gets the share buttons."""
    language = request.query_params.get("lang") or current_language()
    petition = await get_petition(request.app.state.db, state.slug, language)
    response = render(request, "verified.html", {"state": state, "petition": petition})
    if state.receipt is not None:  # shown once: kept by no cache, named to no other site
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid_link() -> Response:
    raise HTTPException(
        400,
        _(
            "This link is not valid. It may have been cut off by your email program: "
            "copy the whole address from the email into your browser."
        ),
    )


async def verify(request: Request) -> Response:
    tokens = request.app.state.tokens
    token = request.path_params["token"]
    try:
        public_id = tokens.read_signature_link("verify", token, max_age=VERIFY_TOKEN_AGE)
    except TokenExpired:
        return render(request, "verify_expired.html", {"token": token}, 400)
    except TokenInvalid:
        return _invalid_link()
    state = await verify_signature(request.app.state.db, public_id, request.app.state.mailer)
    if state is None:
        return _invalid_link()
    return await _verified_page(request, state)


async def verify_resend(request: Request) -> Response:
    form = await read_form(request)
    token = form.get("token")
    try:
        public_id = request.app.state.tokens.read_signature_link(
            "verify", token if isinstance(token, str) else ""
        )
    except TokenInvalid:
        return _invalid_link()
    db = request.app.state.db
    state = await get_signature_state(db, public_id)
    if state is None:
        return _invalid_link()
    if state.status == Status.PENDING:
        client = request.client.host if request.client else None
        await resend_verification(db, request.app.state.mailer, public_id, client)
        return render(request, "thanks.html", {"petition": None, "resent": True})
    return await _verified_page(request, state)


async def _linked_signature(request: Request, purpose: str):
    try:
        return request.app.state.tokens.read_signature_link(purpose, request.path_params["token"])
    except TokenInvalid:
        return _invalid_link()


async def withdraw(request: Request) -> Response:
    public_id = await _linked_signature(request, "withdraw")
    db = request.app.state.db
    if request.method == "POST":
        await read_form(request)  # drain; the token in the address is the authority
        state = await withdraw_signature(db, public_id)
    else:
        state = await get_signature_state(db, public_id)
    if state is None:
        return _invalid_link()
    return render(request, "withdraw.html", {"state": state, "done": request.method == "POST"})


async def unsubscribe_page(request: Request) -> Response:
    public_id = await _linked_signature(request, "unsubscribe")
    db = request.app.state.db
    if request.method == "POST":  # also RFC 8058 one-click, straight from a mail client
        await read_form(request)
        state = await unsubscribe(db, public_id)
    else:
        state = await get_signature_state(db, public_id)
    if state is None:
        return _invalid_link()
    return render(request, "unsubscribe.html", {"state": state, "done": request.method == "POST"})
