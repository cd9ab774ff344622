"""What the sign limits and the form token's bound add to the sign path.

    python bench/sign_limits.py [--signatures 500]

Starts an embedded PostgreSQL in a temporary directory (loopback only) and calls
`signing.submit_signature` (the whole sign path below HTTP: composing and sealing
the email, the transaction that stores it) in four ways, interleaved:

- limits off, no form token counted (as before);
- the form token counted (one upsert);
- the limits on (the free-mail look-up, the advisory locks, the two counts);
- both, which is what a sign request does now;

each from a quiet network (a handful of recent signatures), and then both again
from a flooded network (past the limit, up to the ceiling of recent rows to count).
Then the page cache's cost: renewing the form tokens in a cached petition page.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SECRET = "bench-secret-key-" + "x" * 32


async def sign_path(url: str, n: int) -> None:
    from crypto_cost import make_open_petition

    from petitions.app import create_app
    from petitions.petitions import get_petition
    from petitions.settings import load_settings
    from petitions.signing import Signer, submit_signature

    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET}, env_file=None)
    await make_open_petition(url, "limits-bench")
    app = create_app(settings, run_outbox_worker=False)
    async with app.router.lifespan_context(app):
        db, mailer = app.state.db, app.state.mailer
        petition = await get_petition(db, "limits-bench", "en")
        on, off = settings, replace(settings, sign_limit_per_hour=0, sign_ceiling_per_hour=0)

        def signer(i: int, tag: str) -> Signer:
            return Signer(
                kind="individual", name="Leyla Ahmadi", email=f"{tag}-{i}@union{i // 4}.example",
                country="SE", city="Malmö", occupation=None, organisation=None,
                organisation_type=None, website=None, members=None, comment="Solidarity",
                display="initials", updates=False, ref=None,
            )  # fmt: skip

        ways = {
            "limits off, no token counted": (off, False),
            "form token counted": (off, True),
            "limits on": (on, False),
            "limits on and token counted": (on, True),
        }
        timings: dict[str, list[float]] = {name: [] for name in ways}
        for i in range(-20, n):
            for number, (name, (chosen, count_token)) in enumerate(ways.items()):
                mailer.settings = chosen
                # A network of its own per round and way: a quiet one (a few signatures).
                address = f"10.{number}.{(i + 20) // 4}.{i % 200 + 1}"
                started = time.perf_counter()
                await submit_signature(
                    db, mailer, petition, signer(i, f"w{number}"), address,
                    form_token_id=secrets.token_bytes(16) if count_token else None,
                )  # fmt: skip
                if i >= 0:
                    timings[name].append((time.perf_counter() - started) * 1000)
        mailer.settings = on
        flooded = []
        ceiling = settings.sign_ceiling_per_hour
        for i in range(ceiling - 1):  # one network, up to one below the ceiling
            started = time.perf_counter()
            await submit_signature(
                db, mailer, petition, signer(i, "flood"), "192.0.2.7",
                form_token_id=secrets.token_bytes(16),
            )  # fmt: skip
            if i >= ceiling - 1 - n:
                flooded.append((time.perf_counter() - started) * 1000)
        timings[f"flooded network ({ceiling - n}–{ceiling - 1} recent)"] = flooded

        page = (await _client(app, settings.base_url).get("/p/limits-bench")).content
        assert b'name="form_token"' in page
        renew = app.state.tokens.renew_form_tokens
        started = time.perf_counter()
        for _ in range(2000):
            renew(page)
        renew_us = (time.perf_counter() - started) / 2000 * 1e6

    baseline = statistics.median(timings["limits off, no token counted"])
    for name, values in timings.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        print(f"{name}: median {median:.2f} ms (+{median - baseline:.2f}), "
              f"IQR {q3 - q1:.2f} ms, n={len(values)}")  # fmt: skip
    print(f"renewing the form tokens of a cached petition page ({len(page):,} bytes): "
          f"{renew_us:.0f} µs")  # fmt: skip


def _client(app, base_url: str):
    import httpx

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=500)
    args = parser.parse_args()

    from crypto_cost import on_embedded_database

    on_embedded_database("petitions-limits-bench-", lambda url: sign_path(url, args.signatures))


if __name__ == "__main__":
    main()
