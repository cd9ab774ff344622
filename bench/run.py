"""Load benchmarks against a real `petitions serve`, driven by wrk on loopback.

    python bench/run.py all [--quick] [--no-write] [--data-dir DIR] [--duration S]
        every figure of issue 13's table, each with its baseline, in one run; writes
        the results section of docs/benchmarks.md (unless --no-write)
    python bench/run.py sign [--duration 20] [--connections 64] [--workers 1]
    python bench/run.py verify [...]   (signs first, then confirms those signatures)
    python bench/run.py page|count|list [...]

Starts its own embedded PostgreSQL in a temporary DATA_DIR (or --data-dir, kept)
and its own servers, and stops them afterwards; the single scenarios take --base
to load a running server instead (sign and verify then need its SECRET_KEY in the
environment, to mint form tokens). Needs `wrk` (Debian package `wrk`) and `curl`.
Only loopback addresses are used. The modules beside this file do the work:
servers.py (processes), data.py (databases, tokens, links), figures.py (each
figure), wrk.py, report.py, and the load scripts (*.lua, raw_baseline.py,
sse_fanout.py, bare_app.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from urllib.parse import quote

import data
import figures
import report
from figures import LARGE, SMALL, Plan
from servers import PETITIONS, SLUG, Cluster, embedded_cluster, machine, petitions_server
from wrk import run_wrk


def run_all(args: argparse.Namespace, work: Path) -> int:
    plan = Plan.make(args.quick, args.duration, args.sign_limits, work)
    with embedded_cluster(args.data_dir) as cluster:
        about = machine(cluster)
        print("preparing the small database (demo petition, pending signatures)", flush=True)
        data.run(data.demo_database(cluster, SMALL, fresh=True))
        data.run(data.add_pending(cluster, SMALL, plan.pending_pool))
        ids = data.run(data.pending_public_ids(cluster, SMALL))
        (first, large), (c1, c2) = plan.event_clients, plan.event_commits
        r1, r2 = plan.event_rate
        steps = [
            ("count", lambda: figures.count_figure(plan, cluster)),
            ("sign", lambda: figures.sign_figure(plan, cluster)),
            ("events", lambda: figures.events_figure(plan, cluster, ids[:c1], first, c1, r1)),
            (
                "events-large",
                lambda: figures.events_figure(plan, cluster, ids[c1 : c1 + c2], large, c2, r2),
            ),  # fmt: skip
            ("confirm", lambda: figures.confirm_figure(plan, cluster, ids[c1 + c2 :])),
            ("export", lambda: figures.export_figure(plan, cluster, large_database(plan, cluster))),
            ("list", lambda: figures.list_figure(plan, cluster, large_database(plan, cluster))),
        ]
        done, failed = [], []
        for key, step in steps:
            if args.only and key not in args.only:
                continue
            print(f"--- {key}", flush=True)
            try:
                done.append(step())
            except Exception as error:  # one broken figure does not hide the others
                traceback.print_exc()
                failed.append(key)
                print(f"figure {key}: FAILED ({error})", flush=True)
                continue
            print(
                "\n".join(["", *(f"  {d}" for d in done[-1].details), done[-1].line()]), flush=True
            )
    print("\n" + "\n".join(f.line() for f in done), flush=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    if not args.no_write:
        # The data directory is this machine's: the document names it DIR.
        arguments = ["DIR" if a == str(args.data_dir) else a for a in sys.argv[1:]]
        command = shlex.join(["python", "bench/run.py", *arguments])
        notes = [
            "`count`, `sign`, the event streams and `confirm` ran on the demo petition (360 "
            f"signatures) with {plan.pending_pool:,} pending signatures added to confirm; "
            f"`export` and `list` on {_LARGE_READY.get('count', 0):,} signatures. One "
            "`petitions serve` process (`--no-worker`) per figure, started for it, on the "
            "embedded PostgreSQL by DATABASE_URL.",
        ]
        report.write(
            report.section(plan, about, done, command, notes, _shorter_paths(cluster, work)),
            args.document,
        )
        print(f"written to {args.document}", flush=True)
    return 0


def _shorter_paths(cluster: Cluster, work: Path) -> dict[str, str]:
    """This run's paths, as the report names them."""
    return {
        str(cluster.data_dir): "$DATA_DIR",
        quote(str(cluster.data_dir), safe=""): "$DATA_DIR",
        str(work): "$WORK",
        PETITIONS: "petitions",
        sys.executable: "python",
        str(Path(__file__).resolve().parent) + "/": "bench/",
        str(cluster.bin_dir): "$PGSERVER_BIN",  # pgserver/pginstall/bin
    }


_LARGE_READY: dict[str, int] = {}


def large_database(plan: Plan, cluster: Cluster) -> int:
    """The database with plan.large_signatures signatures (loaded once, kept with
    --data-dir); the number of signatures."""
    if "count" not in _LARGE_READY:
        data.run(data.demo_database(cluster, LARGE, fresh=False))
        count, seconds = data.run(data.grow_to(cluster, LARGE, plan.large_signatures))
        print(f"{LARGE}: {count:,} signatures ready after {seconds:.0f} s", flush=True)
        _LARGE_READY["count"] = count
    return _LARGE_READY["count"]


def run_scenario(args: argparse.Namespace, work: Path) -> int:
    """One load against one server (the single scenarios of before)."""
    if args.base:
        return _load(args, work, args.base, None)
    with embedded_cluster(args.data_dir) as cluster:
        data.run(data.demo_database(cluster, SMALL, fresh=True))
        settings = figures.sign_settings(args.sign_limits)
        with petitions_server(cluster, SMALL, settings, workers=args.workers) as server:
            return _load(args, work, server.base, cluster)


def _load(args: argparse.Namespace, work: Path, base: str, cluster: Cluster | None) -> int:
    plan = Plan.make(False, args.duration, args.sign_limits, work)
    plan.connections = args.connections
    if args.scenario in ("sign", "verify"):
        if cluster is None:
            key = os.environ.get("SECRET_KEY")
            if not key or args.scenario == "verify":
                sys.exit("sign needs the server's SECRET_KEY in the environment; verify needs "
                         "its own server (it reads the pending signatures from its database)")  # fmt: skip
            cluster = Cluster(work, "", key, work)
        result = figures.sign_load(plan, cluster, base, args.duration)
        print(result.output, flush=True)
        if args.scenario == "sign":
            return 0
        ids = data.run(data.pending_public_ids(cluster, SMALL))
        links = data.write_verify_paths(cluster, ids, work / "verify-paths.txt")
        print(f"{len(ids):,} pending signatures to confirm", flush=True)
        result = run_wrk(base, args.duration, args.connections,
                         script=str(Path(__file__).parent / "verify.lua"),
                         env={"TOKENS": str(links)})  # fmt: skip
    else:
        path = {"list": f"/p/{SLUG}/signatures.json", "page": f"/p/{SLUG}",
                "count": f"/p/{SLUG}/count.json"}[args.scenario]  # fmt: skip
        result = run_wrk(base + path, args.duration, args.connections, args.threads)
    print(result.output, flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("all", "sign", "verify", "page", "count", "list"))
    parser.add_argument("--quick", action="store_true", help="all: a smoke test on small data")
    parser.add_argument("--no-write", action="store_true", help="all: leave docs/ alone")
    parser.add_argument("--document", type=Path, default=report.DOCUMENT,
                        help="all: the file whose results section is rewritten")  # fmt: skip
    parser.add_argument("--only", type=lambda s: set(s.split(",")),
                        help="all: these figures only (count,sign,events,events-large,confirm,"
                        "export,list)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path,
                        help="keep the embedded database here (default: a temporary one)")  # fmt: skip
    parser.add_argument("--sign-limits", choices=("spread", "off"), default="spread",
                        help="sign POSTs from many networks with the limits on (default), "
                        "or the limits off (a --base server must be set up to match)")  # fmt: skip
    parser.add_argument("--base", help="a running server (single scenarios)")
    parser.add_argument("--duration", type=float, help="seconds of each load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="app processes when starting one")
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    if args.scenario != "all" and args.duration is None:
        args.duration = 20
    work = Path(tempfile.mkdtemp(prefix="petitions-bench-work-"))
    try:
        runner = run_all if args.scenario == "all" else run_scenario
        code = runner(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
