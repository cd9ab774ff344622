"""`petitions audit` on a large log: time and peak memory.

    python bench/log_audit.py [--leaves 1000000] [--heads-every 1000] [--dir DIR]

Writes a saved copy (the --save layout) of a log of N leaves (adds, with a
withdrawal and a restore every so often), signed heads every `--heads-every`
leaves, then runs `petitions audit --from DIR` in a child process and reports its
wall time and peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from petitions import merkle
from petitions.log_format import Leaf
from petitions.log_keys import LogKey, sign_head

ORIGIN = "https://example.org/p/bench"


def leaves(n: int):
    """Adds, and every 50th leaf a withdrawal of an earlier add, every 200th its restore."""
    removed = []
    hour = 0
    for index in range(n):
        if index % 10_000 == 0:
            hour += 1
        text = f"2026-11-{1 + hour // 24:02d}T{hour % 24:02d}Z"
        if index % 200 == 199 and removed:
            yield Leaf(index, "restore", text, target=removed.pop())
        elif index % 50 == 49:
            target = index - 48  # an add leaf (49 earlier adds than removes in every block)
            removed.append(target)
            yield Leaf(index, "remove", text, target=target, reason="withdrawn")
        else:
            commitment = hashlib.sha256(index.to_bytes(8, "big")).digest()
            yield Leaf(index, "add", text, version=1, commitment=commitment)


def write_copy(directory: Path, n: int, every: int) -> None:
    key = LogKey.from_material(b"bench" * 8)
    frontier, count, heads = merkle.Frontier(), 0, []
    with (directory / "entries.jsonl").open("w") as entries:
        for leaf in leaves(n):
            entries.write(json.dumps(leaf.as_json(), separators=(",", ":")) + "\n")
            count += {"add": 1, "remove": -1, "restore": 1}[leaf.kind]
            frontier.append(merkle.leaf_hash(leaf.data()))
            if frontier.size % every == 0 or frontier.size == n:
                time = f"{leaf.hour}"
                heads.append(sign_head(key, ORIGIN, frontier.size, frontier.root(), count, time))
    (directory / "heads.json").write_text(json.dumps([h.as_json() for h in heads]))
    (directory / "log.json").write_text(json.dumps(heads[-1].as_json()))
    (directory / "count.json").write_text(json.dumps({"slug": "bench", "count": count}))
    (directory / "source.txt").write_text(ORIGIN + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--heads-every", type=int, default=1000)
    parser.add_argument("--dir", type=Path, help="keep the copy here (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / "source.txt").exists():
            started = time.perf_counter()
            write_copy(directory, args.leaves, args.heads_every)
            print(f"wrote the copy in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        size = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "petitions.cli", "audit", "--from", str(directory)],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    print(f"audit of {args.leaves:,} leaves ({size:.0f} MB saved copy): {seconds:.1f} s, "
          f"peak memory {peak:.0f} MB, exit {done.returncode}")  # fmt: skip


if __name__ == "__main__":
    main()
