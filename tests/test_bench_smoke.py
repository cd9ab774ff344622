"""The benchmark harness runs: `bench/run.py all --quick --no-write` finishes and
reports every figure of issue 13's table (a smoke test: no figure is checked)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("count", "sign", "export", "events", "events-large", "list", "confirm")


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_every_figure_is_measured_and_reported():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "all", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    for key in FIGURES:
        assert re.search(rf"^figure {re.escape(key)}: \S", done.stdout, re.M), (key, output[-4000:])
    assert "FAILED" not in done.stdout
    # Every POST was answered 303 and every confirmation link 200.
    assert re.search(r"^figure sign: .*non-303 answers: 0\)", done.stdout, re.M), done.stdout
    assert re.search(r"^figure confirm: .*non-200 answers: 0\)", done.stdout, re.M), done.stdout
