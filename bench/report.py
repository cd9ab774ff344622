"""The results section of docs/benchmarks.md, between its two markers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from figures import Figure, Plan

BEGIN = "<!-- bench:run.py begin -->"
END = "<!-- bench:run.py end -->"
DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


# The order.
ORDER = ("count", "sign", "export", "events", "events-large", "list", "confirm")


def section(
    plan: Plan,
    machine: dict[str, str],
    figures: list[Figure],
    command: str,
    notes: list[str],
    shorter: dict[str, str],
) -> str:
    """The section's text; `shorter` replaces this run's paths in the commands."""
    figures = sorted(figures, key=lambda f: ORDER.index(f.key) if f.key in ORDER else len(ORDER))
    kind = (
        "a `--quick` smoke run (small data, a few seconds a figure): not a measurement"
        if plan.quick
        else f"{plan.duration:g} s a load, wrk -t1 -c{plan.connections} unless said"
    )
    lines = [
        BEGIN,
        "## Issue 13's figures, measured by `bench/run.py all`",
        "",
        f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {kind}. "
        "Each figure and its baseline were measured in this one run, one after the "
        "other, against real processes (wrk and the load scripts on the same cores). "
        "This section is replaced on every run.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in machine.items()),
        "",
        *notes,
        "",
        "| figure | this run | goal |",
        "| --- | --- | --- |",
        *(f"| {f.title} | {f.value} | {f.goal} |" for f in figures),
        "",
    ]
    for figure in figures:
        lines += [f"**{figure.key}**: {figure.title}", ""]
        lines += [f"- {detail}" for detail in figure.details]
        lines += ["", "```", *(_shorten(c, shorter) for c in figure.commands), "```", ""]
    lines.append(END)
    return "\n".join(lines)


def write(text: str, document: Path = DOCUMENT) -> None:
    """Replace what is between the markers (adding them before the first section when
    missing); the rest of the file stays as it is."""
    current = document.read_text()
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        updated = head + text + tail
    else:
        at = current.find("\n## ")
        at = len(current) if at < 0 else at + 1
        updated = current[:at] + text + "\n\n" + current[at:]
    document.write_text(updated)


def _shorten(command: str, shorter: dict[str, str]) -> str:
    for long, short in sorted(shorter.items(), key=lambda item: -len(item[0])):
        command = command.replace(long, short)
    return command
