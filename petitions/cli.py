"""The `petitions` command: serve, migrate, worker, purge, rotate-key, demo, create-admin,
reset-totp, export, audit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from dataclasses import replace

import asyncpg

from .crypto import DataKeyError
from .db import asyncpg_dsn, database_url_for
from .logs import configure_logging, uvicorn_log_options
from .migrations import MigrationError
from .sealing import prepare_database
from .serving import (
    ALL_INTERFACES,
    RESERVED_FILES,
    SHUTDOWN_GRACE_SECONDS,
    ServerLimits,
    address_warnings,
    fitting_connections,
)
from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("petitions")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is cmd_audit:  # an outsider's check: no settings, no database
        return cmd_audit(args)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"petitions: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)  # LOG_FORMAT: logs.py
    try:
        return args.command(args, settings)
    except (MigrationError, SettingsError, DataKeyError) as error:
        print(f"petitions: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petitions",
        description="Petitions and solidarity statements with email-confirmed signatures.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="apply migrations, then serve the web app")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="app processes (default 1)")
    serve.add_argument("--no-worker", action="store_true", help="do not deliver email in-process")
    # Limits against slow or oversized requests (serving.py; docs/operations.md).
    limits = ServerLimits()
    serve.add_argument(
        "--max-header-bytes",
        type=int,
        default=limits.max_header_bytes,
        metavar="N",
        help="largest request line and headers, in bytes; "
        f"larger ones get 431 (default {limits.max_header_bytes})",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=limits.header_timeout,
        metavar="SECONDS",
        help=f"time a request has to send its headers (default {limits.header_timeout:g})",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=limits.keep_alive_timeout,
        metavar="SECONDS",
        help="idle time before a kept-alive connection is "
        f"closed (default {limits.keep_alive_timeout})",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=limits.max_connections,
        metavar="N",
        help="requests at once per process, event streams apart (up to "
        f"{limits.stream_connections:,} more); beyond, 503 (default {limits.max_connections})",
    )
    serve.add_argument(
        "--backlog",
        type=int,
        default=limits.backlog,
        metavar="N",
        help=f"connections waiting to be accepted (default {limits.backlog})",
    )
    serve.set_defaults(command=cmd_serve)

    commands.add_parser("migrate", help="apply pending migrations").set_defaults(
        command=cmd_migrate
    )

    worker = commands.add_parser("worker", help="deliver queued email, without serving pages")
    worker.set_defaults(command=cmd_worker)

    commands.add_parser(
        "purge",
        help="apply the retention periods now (every worker does it hourly) and say what went",
    ).set_defaults(command=cmd_purge)

    rotate = commands.add_parser(
        "rotate-key",
        help="re-encrypt signer data under DATA_KEY (older keys in DATA_KEY_PREVIOUS), online",
    )
    rotate.add_argument(
        "--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)"
    )
    rotate.set_defaults(command=cmd_rotate_key)

    demo = commands.add_parser("demo", help="load the demo petition with signatures")
    demo.add_argument(
        "--signatures",
        type=int,
        default=0,
        metavar="N",
        help="also add N generated verified signatures",
    )
    demo.set_defaults(command=cmd_demo)

    admin = commands.add_parser("create-admin", help="create an admin user (or reset a password)")
    admin.add_argument("email")
    admin.add_argument("--role", choices=("owner", "editor"), default="owner")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    admin.set_defaults(command=cmd_create_admin)

    reset_totp = commands.add_parser(
        "reset-totp",
        help="remove an admin's second factor (a lost phone) and end their sessions",
    )
    reset_totp.add_argument("email")
    reset_totp.set_defaults(command=cmd_reset_totp)

    export = commands.add_parser("export", help="write a petition's signatures as CSV")
    export.add_argument("slug", help="the petition's address, as in /p/SLUG")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="the file (default: standard output)"
    )
    export.add_argument(
        "--status",
        default="verified",
        help="verified (the default), all, pending, held, rejected or withdrawn",
    )
    export.add_argument("--kind", default="", help="individual or organisation (default: both)")
    export.add_argument("--country", default="", metavar="CC", help="one country, such as IR")
    export.add_argument(
        "--since", default="", metavar="DATE", help="confirmed on or after, such as 2025-05-01"
    )
    export.add_argument(
        "--bom", action="store_true", help="start with a byte-order mark, for Excel"
    )
    export.set_defaults(command=cmd_export)

    audit = commands.add_parser(
        "audit",
        help="check a petition's transparency log: every leaf, signed head and the count",
    )
    audit.add_argument(
        "url", nargs="?", metavar="URL", help="the petition's address, https://example.org/p/SLUG"
    )
    audit.add_argument("--save", metavar="DIR", help="keep a copy of what was downloaded in DIR")
    audit.add_argument("--from", dest="from_dir", metavar="DIR", help="audit a saved copy offline")
    audit.add_argument(
        "--since",
        metavar="HEADFILE",
        help="also prove the log only grew since a head kept earlier "
        "(a saved log.json, or SIZE:ROOT as printed in emails)",
    )
    audit.set_defaults(command=cmd_audit)
    return parser


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with database_url_for(settings, session=True) as url:
        applied = asyncio.run(prepare_database(url, settings))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not 1 <= args.port <= 65535 or not 1 <= args.workers <= 64:
        print("petitions: --port must be 1-65535 and --workers 1-64", file=sys.stderr)
        return 2
    try:
        limits = _server_limits(args)
    except ValueError as error:
        print(f"petitions: {error}", file=sys.stderr)
        return 2
    _exit_cleanly_on_sigterm()
    settings = _with_served_address(settings, args.host, args.port)
    for level, message in address_warnings(settings, args.host, args.port):
        log.log(level, "%s", message)
    with database_url_for(settings) as url:
        # The migration lock is a session lock: past any pooler (DATABASE_SESSION_URL).
        asyncio.run(prepare_database(settings.database_session_url or url, settings))
        log.info("serving on http://%s:%d (data in %s)", args.host, args.port,
                 "DATABASE_URL" if settings.database_url else settings.data_dir)  # fmt: skip
        options = dict(host=args.host, port=args.port, log_level=settings.log_level.lower(),
                       **uvicorn_log_options(settings.log_format),
                       # In-flight requests may finish; event streams end at once (app.py).
                       timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
                       proxy_headers=bool(settings.trusted_proxies),
                       forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
                       **limits.uvicorn_options())  # fmt: skip
        if args.workers == 1:
            from .app import create_app

            if args.no_worker:
                settings = replace(settings, run_outbox_worker=False)
            app = create_app(settings.with_database(url))
            uvicorn.run(app, **options)
        else:
            # Worker processes re-read the settings from the environment: hand them
            # the resolved database and key.
            os.environ["DATABASE_URL"] = url
            os.environ["SECRET_KEY"] = settings.secret_key
            os.environ["BASE_URL"] = settings.base_url
            if args.no_worker:
                os.environ["PETITIONS_NO_WORKER"] = "1"
            uvicorn.run(
                "petitions.app:create_app_from_environment",
                factory=True,
                workers=args.workers,
                **options,
            )
    return 0


def _with_served_address(settings: Settings, host: str, port: int) -> Settings:
    """Without BASE_URL, links, emails and the allowed host name this server's own
    address (so `--port 8766` does not send visitors to port 8000)."""
    if settings.base_url_given:
        return settings
    if host in ALL_INTERFACES:
        log.warning(
            "serving on all interfaces (--host %s) without BASE_URL: links and emails will "
            "name http://127.0.0.1:%d, which other machines cannot reach, and requests for "
            "any other host name are refused; set BASE_URL to the address visitors use, "
            "such as BASE_URL=https://petitions.example.org",
            host or "''",
            port,
        )
        host = "127.0.0.1"
    name = f"[{host}]" if ":" in host else host
    return replace(settings, base_url=f"http://{name}:{port}")


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop, kill) ends the command as Ctrl-C does: uvicorn and
    the worker finish their work first, then the process exits with 0 through Python's
    own exit, whose atexit hooks stop the embedded PostgreSQL this process started (the
    default action of SIGTERM would kill the process and leave the server running)."""

    def exit_zero(signum, frame) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_zero)


def _server_limits(args: argparse.Namespace) -> ServerLimits:
    """The limits asked for, checked, and fitted to the open-file limit."""
    checks = (
        ("--max-header-bytes", args.max_header_bytes, 1024, 1024 * 1024),
        ("--header-timeout", args.header_timeout, 0.5, 600),
        ("--keep-alive-timeout", args.keep_alive_timeout, 1, 600),
        ("--max-connections", args.max_connections, 16, 1_000_000),
        ("--backlog", args.backlog, 16, 65535),
    )
    for option, value, low, high in checks:
        if not low <= value <= high:
            raise ValueError(f"{option} must be between {low:g} and {high:g}")
    asked = ServerLimits(args.max_header_bytes, args.header_timeout, args.keep_alive_timeout,
                         args.max_connections, args.backlog)  # fmt: skip
    limits = fitting_connections(asked)
    if limits.stream_connections < asked.stream_connections:
        log.warning("only %d connections and %d event streams per process fit the open-file "
                    "limit (ulimit -n); raise it to %d to allow %d and %d",
                    limits.max_connections, limits.stream_connections,
                    asked.max_connections + asked.stream_connections + RESERVED_FILES,
                    asked.max_connections, asked.stream_connections)  # fmt: skip
    return limits


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from .db import open_database
    from .delivery import run_outbox_worker

    async def run(url: str) -> None:
        await prepare_database(url, settings)
        db = open_database(url, max_size=4)
        await db.connect()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("outbox worker running (%s)", settings.smtp_host or "no SMTP_HOST: to the log")
        try:
            await run_outbox_worker(db, settings.with_database(url), stop)
        finally:
            await db.disconnect()

    _exit_cleanly_on_sigterm()  # while starting; then the loop's handler above
    with database_url_for(settings, session=True) as url:
        asyncio.run(run(url))
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from .db import open_database
    from .retention import enforce_retention

    async def run(url: str):
        await prepare_database(url, settings)
        db = open_database(url, max_size=2)
        await db.connect()
        try:
            # If a worker is running a pass, wait for it, then run one too.
            return await enforce_retention(db, settings, wait=True)
        finally:
            await db.disconnect()

    with database_url_for(settings, session=True) as url:
        report = asyncio.run(run(url))
    print(report.summary())
    return 0


def cmd_rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    from .crypto import cipher_for
    from .sealing import rotate

    if not 1 <= args.batch <= 100_000:
        print("petitions: --batch must be between 1 and 100,000", file=sys.stderr)
        return 2
    cipher = cipher_for(settings)

    def progress(report) -> None:
        if sys.stderr.isatty():
            print(f"\r  re-sealed {report.signatures:,} signatures and {report.emails:,} emails",
                  end="", file=sys.stderr, flush=True)  # fmt: skip

    async def run(url: str):
        await prepare_database(url, settings)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await rotate(conn, cipher, args.batch, progress)
        finally:
            await conn.close()

    with database_url_for(settings, session=True) as url:
        report = asyncio.run(run(url))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"re-sealed {report.signatures:,} signatures and {report.emails:,} emails under "
        f"data key {cipher.current.hex_id} ({cipher.current.origin})"
    )
    if report.remaining != (0, 0):
        print(
            f"petitions: {report.remaining[0]:,} signatures and {report.remaining[1]:,} emails "
            "are still under another key (rows locked by other work throughout): run "
            "rotate-key again",
            file=sys.stderr,
        )
        return 1
    print("every sealed value is under the current key: DATA_KEY_PREVIOUS may be removed")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import add_generated_signatures, load_demo

    if args.signatures < 0 or args.signatures > 50_000_000:
        print("petitions: --signatures must be between 0 and 50,000,000", file=sys.stderr)
        return 2
    with database_url_for(settings, session=True) as url:
        asyncio.run(prepare_database(url, settings))
        slug, created = asyncio.run(load_demo(url, settings.secret_key))
        print(f"demo petition {'loaded' if created else 'already present'}: /p/{slug}")
        if args.signatures:
            progress = _progress_printer(args.signatures)
            added = asyncio.run(
                add_generated_signatures(url, settings.secret_key, slug, args.signatures, progress)
            )
            print(f"\nadded {added:,} generated signatures to /p/{slug}")
        asyncio.run(prepare_database(url, settings))  # seals what was bulk-loaded in clear
        if args.signatures:  # what the worker would do next, so the first export is quick
            from .export_refresh import make_all

            blocks = asyncio.run(make_all(url, settings))
            print(f"made {blocks:,} blocks of the export's lines (docs/operations.md)")
    return 0


def _progress_printer(total: int):
    def show(done: int) -> None:
        if sys.stdout.isatty():
            print(f"\r  {done:,} / {total:,} ({done * 100 // total}%)", end="", flush=True)

    return show


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from .admins import AdminError, create_or_reset_admin

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            print("petitions: the passwords differ", file=sys.stderr)
            return 2

    async def run(url: str) -> bool:
        await prepare_database(url, settings)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await create_or_reset_admin(conn, args.email, password, args.role)
        finally:
            await conn.close()

    with database_url_for(settings, session=True) as url:
        try:
            created = asyncio.run(run(url))
        except AdminError as error:
            print(f"petitions: {error}", file=sys.stderr)
            return 2
    print(f"{'created' if created else 'updated'} {args.role} {args.email.strip()}")
    return 0


def cmd_reset_totp(args: argparse.Namespace, settings: Settings) -> int:
    from .admins import AdminError, reset_second_factor

    async def run(url: str) -> None:
        await prepare_database(url, settings)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await reset_second_factor(conn, args.email)
        finally:
            await conn.close()

    with database_url_for(settings, session=True) as url:
        try:
            asyncio.run(run(url))
        except AdminError as error:
            print(f"petitions: {error}", file=sys.stderr)
            return 2
    print(
        f"removed the second factor of {args.email.strip()} and ended their sessions: "
        "they log in with their password, then set up a new one"
    )
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .crypto import cipher_for
    from .export import ExportFilter, export_to_file
    from .fields import BadValue

    try:
        filters = ExportFilter.parse(
            {"status": args.status, "kind": args.kind, "country": args.country, "since": args.since}
        )
    except BadValue as error:
        print(f"petitions: {error}", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output and args.output != "-" else None
    progress = sys.stderr if sys.stderr.isatty() and (output or not sys.stdout.isatty()) else None
    with database_url_for(settings, session=True) as url:
        asyncio.run(prepare_database(url, settings))
        try:
            rows = asyncio.run(
                export_to_file(
                    url,
                    args.slug,
                    filters,
                    output,
                    bom=args.bom,
                    progress=progress,
                    cipher=cipher_for(settings),
                )
            )
        except LookupError as error:
            print(f"petitions: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            print(
                f"petitions: cannot write {output or 'standard output'}: {error}", file=sys.stderr
            )
            return 1
    if output is not None:
        print(f"wrote {rows:,} signatures to {output}", file=sys.stderr)
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from pathlib import Path

    from .log_audit import run_audit

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    try:
        return run_audit(args.url, path(args.save), path(args.from_dir), path(args.since))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
