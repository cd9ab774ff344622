"""The baseline of the counter figure: a bare Starlette route returning a fixed small
JSON, served by uvicorn with the options `petitions serve` uses (the same protocol
class, limits, log settings; uvloop, since uvicorn picks it when installed).

    python bench/bare_app.py --port 8001 [--max-connections N]
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from petitions.serving import ServerLimits, fitting_connections

# The size and shape of a count.json answer.
BODY = (
    b'{"slug":"free-haft-tapeh-workers","count":1000360,"individuals":980000,'
    b'"organisations":20360,"goal":5000,"updated_at":"2026-01-01T12:00:00Z"}'
)


async def count_json(request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/count.json", count_json)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-connections", type=int, default=ServerLimits().max_connections)
    args = parser.parse_args()
    limits = fitting_connections(ServerLimits(max_connections=args.max_connections))
    # As petitions.cli.cmd_serve calls it, with LOG_LEVEL=WARNING and no trusted proxies.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5, proxy_headers=False, forwarded_allow_ips=None,
                **limits.uvicorn_options())  # fmt: skip


if __name__ == "__main__":
    main()
