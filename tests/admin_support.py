"""Helpers for the admin tests: admins in the database, logged-in clients, CSRF tokens."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from functools import lru_cache

import httpx

from petitions.admins import hash_password

PASSWORD = "correct horse battery staple"


@lru_cache(maxsize=1)
def password_hash() -> str:
    """One Argon2 hash for every test admin: hashing takes a tenth of a second."""
    return hash_password(PASSWORD)


async def make_admin(conn, email: str = "owner@example.org", role: str = "owner") -> int:
    return await conn.fetchval(
        "INSERT INTO admins (email, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
        email,
        password_hash(),
        role,
    )


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def log_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    page = await http.get("/admin/login")
    return await http.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
    )


class AdminClient:
    """An httpx client with an admin session; its posts carry the session's CSRF token."""

    def __init__(self, http: httpx.AsyncClient, token: str, admin_id: int, email: str) -> None:
        self.http = http
        self.token = token
        self.admin_id = admin_id
        self.email = email

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, data: dict | None = None, **kwargs) -> httpx.Response:
        return await self.http.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)


def anonymous(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@asynccontextmanager
async def admin_client(app, conn, role: str = "owner", email: str | None = None):
    email = email or f"{role}@example.org"
    admin_id = await make_admin(conn, email, role)
    async with anonymous(app) as http:
        response = await log_in(http, email)
        assert response.status_code == 303, response.text
        token = csrf_from((await http.get("/admin")).text)
        yield AdminClient(http, token, admin_id, email)
