"""Slowing down password and code guessing without letting an attacker lock an admin out.

A failed login (a wrong password, or a wrong second-factor code) is counted in
buckets (`throttle_counters`, shared by every app process); when a bucket is
full, further attempts that would be counted in it are answered 429 with a
Retry-After, without checking anything, until its oldest failures age out. No
account is ever locked: the buckets are chosen so that an attacker fills their
own, not the owner's.

- From a browser without a device cookie for this account, a failure counts
  for the account *from this network* (IPv4 /24, IPv6 /48), for the *network*
  (every email tried from it: spraying), and for the *account from anywhere*
  (a limit far above what one network can reach, against guessing spread over
  many networks).
- From a browser holding this account's device cookie (devices.py, set by a
  successful login), a failure counts for that *device* only. The owner's own
  browser keeps its allowance while the account is attacked from elsewhere, or
  from the same office network.

Buckets are keyed hashes: no email or network is stored in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from . import throttle
from .keys import derive_key

PERIOD = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT_AND_NETWORK = 5
MAX_FAILURES_PER_NETWORK = 20  # an office of admins shares one network
MAX_FAILURES_PER_ACCOUNT = 30  # from every network together: six networks' worth at least
MAX_FAILURES_PER_DEVICE = 5
PREFIX = "login:"


@dataclass(frozen=True)
class Bucket:
    name: str
    limit: int


def _bucket(secret_key: str, kind: str, value: str, limit: int) -> Bucket:
    key = derive_key(secret_key, "login-throttle")
    digest = hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
    return Bucket(f"{PREFIX}{kind}:{digest}", limit)


def buckets_for(
    secret_key: str, email: str, network: str | None, device: str | None
) -> list[Bucket]:
    """The buckets one attempt counts in (see the module's docstring)."""
    if device is not None:
        return [_bucket(secret_key, "device", device, MAX_FAILURES_PER_DEVICE)]
    network = network or "unknown"
    return [
        _bucket(secret_key, "account-net", f"{email}\x00{network}",
                MAX_FAILURES_PER_ACCOUNT_AND_NETWORK),
        _bucket(secret_key, "net", network, MAX_FAILURES_PER_NETWORK),
        _bucket(secret_key, "account", email, MAX_FAILURES_PER_ACCOUNT),
    ]  # fmt: skip


async def wait_needed(conn: asyncpg.Connection, buckets: list[Bucket]) -> int:
    """Seconds to wait before trying again (0: go ahead)."""
    waits = [await throttle.seconds_until_below(conn, b.name, PERIOD, b.limit) for b in buckets]
    return max(waits, default=0)


async def begin_attempt(conn: asyncpg.Connection, buckets: list[Bucket]) -> int:
    """Count an attempt before it is checked, so that many at once cannot all slip
    under a limit; return the seconds to wait instead (the attempt then not counted)."""
    wait = await wait_needed(conn, buckets)
    if wait:
        return wait
    for bucket in buckets:
        await throttle.add_hit(conn, bucket.name)
    over = [b for b in buckets if await throttle.recent_hits(conn, b.name, PERIOD) > b.limit]
    if over:  # others counted at the same moment: this one waits
        for bucket in buckets:
            await throttle.remove_hit(conn, bucket.name)
        return max(
            [await throttle.seconds_until_below(conn, b.name, PERIOD, b.limit) for b in over] + [1]
        )
    return 0


async def attempt_failed(conn: asyncpg.Connection) -> None:
    await throttle.drop_old(conn, PREFIX, timedelta(days=1))


async def attempt_succeeded(
    conn: asyncpg.Connection, buckets: list[Bucket], complete: bool = True
) -> None:
    """Take back this attempt. Once logged in (`complete`: no second factor to
    come), the owner's own buckets (this account from this network, this
    device) start afresh."""
    own = (f"{PREFIX}account-net:", f"{PREFIX}device:")
    for bucket in buckets:
        if complete and bucket.name.startswith(own):
            await throttle.forget(conn, bucket.name)
        else:
            await throttle.remove_hit(conn, bucket.name)
