"""Signed tokens: one salt per purpose, tamper-evident, with an age limit. No database."""

from __future__ import annotations

import secrets
import time
import uuid

import pytest

from petitions.tokens import (
    FORM_TOKEN_AGE,
    VERIFY_TOKEN_AGE,
    TokenExpired,
    TokenInvalid,
    Tokens,
)

TOKENS = Tokens("a-secret-key-for-token-tests-" + "k" * 32)


@pytest.fixture
def made_ago(monkeypatch):
    """make(purpose, value, seconds): a token as it was made `seconds` ago (the
    clock it is stamped with is moved back, not waited on)."""
    real_time = time.time

    def make(purpose: str, value, seconds: float, tokens: Tokens = TOKENS) -> str:
        monkeypatch.setattr(time, "time", lambda: real_time() - seconds)
        try:
            return tokens.make(purpose, value)
        finally:
            monkeypatch.setattr(time, "time", real_time)

    return make


def test_a_token_reads_back_as_its_value():
    token = TOKENS.make("form", "petition-1")
    assert TOKENS.read("form", token) == "petition-1"
    assert TOKENS.read("form", token, max_age=FORM_TOKEN_AGE) == "petition-1"


def test_a_token_made_for_one_purpose_is_refused_for_another():
    token = TOKENS.make("verify", "abc")
    assert TOKENS.make("withdraw", "abc") != token  # one salt per purpose
    for purpose in ("withdraw", "unsubscribe", "form"):
        with pytest.raises(TokenInvalid):
            TOKENS.read(purpose, token)


def test_a_tampered_token_is_refused(made_ago):
    token = TOKENS.make("verify", "abc")
    value, stamp, signature = token.split(".")
    forged_value = TOKENS.make("verify", "abd").split(".")[0]
    earlier_stamp = made_ago("verify", "abc", 3600).split(".")[1]
    middle = len(signature) // 2
    other = "A" if signature[middle] != "A" else "B"
    for tampered in (
        f"{forged_value}.{stamp}.{signature}",  # another value under this signature
        f"{value}.{earlier_stamp}.{signature}",  # another time
        f"{value}.{stamp}.{signature[:middle]}{other}{signature[middle + 1 :]}",
        f"{value}.{stamp}",  # no signature
        token[:-4],
        token + "AAAA",
        "not a token",
        "...",
    ):
        with pytest.raises(TokenInvalid):
            TOKENS.read("verify", tampered)


def test_empty_and_over_long_tokens_are_refused_unread():
    with pytest.raises(TokenInvalid):
        TOKENS.read("verify", "")
    genuine_but_long = TOKENS.make("verify", secrets.token_urlsafe(300))  # incompressible
    assert len(genuine_but_long) > 300
    with pytest.raises(TokenInvalid):
        TOKENS.read("verify", genuine_but_long)


def test_a_token_whose_value_is_not_text_is_refused():
    for value in (["abc"], {"id": 1}, 42, None):
        with pytest.raises(TokenInvalid):
            TOKENS.read("verify", TOKENS.make("verify", value))


def test_a_token_made_with_another_secret_is_refused():
    token = Tokens("another-secret-key-for-tests-" + "o" * 32).make("verify", "abc")
    with pytest.raises(TokenInvalid):
        TOKENS.read("verify", token)


def test_an_old_token_is_expired_and_says_what_it_was_for(made_ago):
    old = made_ago("form", "petition-1", FORM_TOKEN_AGE + 60)
    with pytest.raises(TokenExpired) as expired:
        TOKENS.read("form", old, max_age=FORM_TOKEN_AGE)
    assert expired.value.value == "petition-1"
    # Genuine all the same: without an age limit, or with a longer one, it reads.
    assert TOKENS.read("form", old) == "petition-1"
    assert TOKENS.read("form", old, max_age=VERIFY_TOKEN_AGE) == "petition-1"
    # Younger than the limit: fine.
    recent = made_ago("form", "petition-1", FORM_TOKEN_AGE - 60)
    assert TOKENS.read("form", recent, max_age=FORM_TOKEN_AGE) == "petition-1"


def test_a_forged_old_token_is_invalid_not_expired(made_ago):
    old = made_ago("form", "petition-1", FORM_TOKEN_AGE + 60)
    with pytest.raises(TokenInvalid):
        TOKENS.read("verify", old, max_age=FORM_TOKEN_AGE)
    with pytest.raises(TokenInvalid):
        Tokens("another-secret-key-for-tests-" + "o" * 32).read("form", old, max_age=FORM_TOKEN_AGE)


def test_a_signature_link_reads_back_as_its_public_id():
    public_id = uuid.uuid4()
    token = TOKENS.signature_link("verify", public_id)
    assert TOKENS.read_signature_link("verify", token) == public_id
    assert TOKENS.read_signature_link("verify", token, max_age=VERIFY_TOKEN_AGE) == public_id
    assert TOKENS.read("verify", token) == public_id.hex
    with pytest.raises(TokenInvalid):
        TOKENS.read_signature_link("withdraw", token)
    other = Tokens("another-secret-key-for-tests-" + "o" * 32)
    with pytest.raises(TokenInvalid):
        other.read_signature_link("verify", token)


def test_an_expired_signature_link_carries_its_public_id(made_ago):
    public_id = uuid.uuid4()
    old = made_ago("verify", public_id.hex, VERIFY_TOKEN_AGE + 60)
    with pytest.raises(TokenExpired) as expired:
        TOKENS.read_signature_link("verify", old, max_age=VERIFY_TOKEN_AGE)
    assert uuid.UUID(hex=expired.value.value) == public_id


def test_a_signature_link_whose_value_is_not_a_uuid_is_invalid(made_ago):
    for value in ("not-a-uuid", "", "12345", uuid.uuid4().hex + "0"):
        with pytest.raises(TokenInvalid):
            TOKENS.read_signature_link("verify", TOKENS.make("verify", value))
    # Even when it is also too old: what it carries is no signature's id.
    old = made_ago("verify", "not-a-uuid", VERIFY_TOKEN_AGE + 60)
    with pytest.raises(TokenInvalid):
        TOKENS.read_signature_link("verify", old, max_age=VERIFY_TOKEN_AGE)
