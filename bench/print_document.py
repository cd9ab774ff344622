"""The delivery document of a large petition: time and the app's peak memory.

    python bench/print_document.py [--signatures 1000000] [--data-dir DIR] [--lang en]

Loads the demo petition with N generated verified signatures into a temporary
embedded database (or reuses --data-dir, loading only when it is new), starts
`petitions serve` on loopback, reads `GET /p/{slug}/print` to the end as it arrives
(at most 64 KB a read), and reports the time to the first byte, the total time, the size, the
entries listed, and the app process's resident memory before and at its peak
(VmRSS and VmHWM from /proc). The peak is the whole process's since it started,
so it covers the document and everything before it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SLUG, free_port, wait_healthy  # noqa: E402

ENTRY = b'<tr class="entry'


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=1_000_000)
    parser.add_argument("--data-dir", help="keep the database here (loaded once)")
    parser.add_argument("--lang", default="en")
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="petitions-bench-print-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(DATA_DIR=data_dir, LOG_LEVEL="WARNING")
    marker = Path(data_dir) / f"loaded-{args.signatures}"
    if not marker.exists():
        started = time.monotonic()
        subprocess.run(
            ["petitions", "demo", "--signatures", str(args.signatures)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        marker.touch()
        print(f"loaded {args.signatures:,} signatures in {time.monotonic() - started:.0f} s")

    port = free_port()
    server = subprocess.Popen(["petitions", "serve", "--port", str(port), "--no-worker"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, seconds=120)
        with urllib.request.urlopen(f"{base}/p/{SLUG}?lang={args.lang}") as r:
            r.read()  # the app warmed up: templates compiled, counts in memory
        before = memory_mb(server.pid)
        started = time.monotonic()
        first_byte = None
        size = entries = 0
        carry = b""  # shorter than ENTRY: a match is never counted twice
        with urllib.request.urlopen(f"{base}/p/{SLUG}/print?lang={args.lang}", timeout=600) as r:
            while chunk := r.read1(64 * 1024):  # what has arrived, up to 64 KB
                if first_byte is None:
                    first_byte = time.monotonic() - started
                size += len(chunk)
                text = carry + chunk
                entries += text.count(ENTRY)
                carry = text[-(len(ENTRY) - 1) :]
        total = time.monotonic() - started
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"entries listed      {entries:,}")
    print(f"document size       {size / 1e6:,.1f} MB")
    print(f"first byte after    {first_byte * 1000:,.0f} ms")
    print(f"whole document in   {total:,.1f} s ({entries / total:,.0f} entries/s)")
    print(f"app RSS before      {before['VmRSS']:,.0f} MB")
    print(f"app RSS after       {after['VmRSS']:,.0f} MB")
    print(
        f"app peak RSS        {after['VmHWM']:,.0f} MB (before the document: {before['VmHWM']:,.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
