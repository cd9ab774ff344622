"""Running wrk and reading its report."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkResult:
    command: str
    requests: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]  # "50%", "75%", "90%", "99%"
    non_2xx_3xx: int
    socket_errors: str
    lines: dict[str, str] = field(default_factory=dict)  # what the Lua script's done() wrote
    output: str = ""

    def summary(self) -> str:
        p = self.latency_ms
        return (
            f"{self.requests_per_second:,.0f} req/s, {self.requests:,} requests in "
            f"{self.seconds:.1f} s, p50 {p.get('50%', 0):.2f} ms, p99 {p.get('99%', 0):.2f} ms"
        )


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse(output: str, command: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = {
        q: _milliseconds(v) for q, v in re.findall(r"^\s+(50%|75%|90%|99%)\s+(\S+)$", output, re.M)
    }
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    lines = dict(re.findall(r"^bench (\w+): (.*)$", output, re.M))
    if not (done and rate):
        raise RuntimeError(f"could not read wrk's report:\n{output}")
    return WrkResult(
        command=command,
        requests=int(done.group(1)),
        seconds=_milliseconds(done.group(2) + done.group(3)) / 1000,
        requests_per_second=float(rate.group(1)),
        latency_ms=latency,
        non_2xx_3xx=int(non.group(1)) if non else 0,
        socket_errors=errors.group(1) if errors else "none",
        lines=lines,
        output=output,
    )


def run_wrk(
    url: str,
    duration: float,
    connections: int = 64,
    threads: int = 1,
    script: str | None = None,
    env: dict[str, str] | None = None,
    show: bool = True,
) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--latency", "--timeout", "10s"]  # fmt: skip
    if script:
        command += ["-s", script]
    command.append(url)
    variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    shown = (variables + " " if variables else "") + shlex.join(command)
    if show:
        print("$", shown, flush=True)
    done = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True
    )
    return parse(done.stdout, shown)
