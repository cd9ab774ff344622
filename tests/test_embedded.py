"""The installed command on the embedded default, run as a user would: from another folder."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from petitions.settings import SettingsError, load_settings

DEMO_SLUG = "free-haft-tapeh-workers"


def _command() -> list[str]:
    script = shutil.which("petitions")
    assert script, "the `petitions` console script is not installed"
    return [script]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def user_env():
    """A user's environment: no DATABASE_URL, a data folder of their own.

    The folder is outside pytest's tmp_path on purpose: pytest makes its own
    temporary root private (0700) whenever a test session starts, which would
    lock the embedded server's system user out of a data folder beneath it.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="petitions-user-"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "BASE_URL")
    }
    env.update(DATA_DIR=str(data_dir / "data"), LOG_LEVEL="WARNING")
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


def _run(args, env, cwd, timeout=120, stdin=None):
    return subprocess.run(
        _command() + args,
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_healthy(base: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become healthy")


@pytest.mark.slow  # runs `petitions serve` and `petitions demo` as processes
def test_serve_and_demo_share_one_embedded_server_and_data_persists(user_env, tmp_path):
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        _command() + ["serve", "--port", str(port), "--no-worker"],
        env=user_env,
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(base, serve)
        # A second process on the same DATA_DIR joins the running server.
        demo = _run(["demo"], user_env, elsewhere)
        assert demo.returncode == 0, demo.stderr
        assert "loaded" in demo.stdout
        page = httpx.get(f"{base}/p/{DEMO_SLUG}", timeout=10)
        assert page.status_code == 200
        assert "Haft Tapeh" in page.text
        assert httpx.get(f"{base}/", timeout=10).text.count(f"/p/{DEMO_SLUG}") >= 1
        assert httpx.get(f"{base}/static/site.css", timeout=10).status_code == 200
        listing = httpx.get(f"{base}/p/{DEMO_SLUG}/signatures.json", timeout=10).json()
        assert len(listing["signatures"]) == 50 and listing["next"]
        # No BASE_URL given: links name the address actually served, not port 8000.
        assert listing["next"].startswith(f"{base}/p/{DEMO_SLUG}/signatures.json?")
        count = httpx.get(f"{base}/p/{DEMO_SLUG}/count.json", timeout=10).json()
        assert count["count"] >= 200
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)

    # The last user gone, the embedded server stopped...
    pgdata = Path(user_env["DATA_DIR"]) / "postgres"
    assert not (pgdata / "postmaster.pid").exists()
    # ...and the data is still there when it starts again.
    again = _run(["demo"], user_env, elsewhere)
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout


def test_secret_key_is_generated_once_and_kept(tmp_path):
    environ = {"DATA_DIR": str(tmp_path)}
    first = load_settings(environ, env_file=None).secret_key
    second = load_settings(environ, env_file=None).secret_key
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_external_database_requires_a_secret_key(tmp_path):
    with pytest.raises(SettingsError, match="SECRET_KEY is required"):
        load_settings({"DATABASE_URL": "postgresql://db/petitions"}, env_file=None)
    with pytest.raises(SettingsError, match="SMTP_TLS"):
        load_settings({"DATA_DIR": str(tmp_path), "SMTP_TLS": "ssl3"}, env_file=None)


def test_settings_from_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATA_DIR={tmp_path}\nSMTP_HOST=mail.example\nSMTP_TLS=starttls\n")
    settings = load_settings({}, env_file=env_file)
    assert settings.smtp_host == "mail.example" and settings.smtp_port == 587
    # The environment wins over the file.
    assert load_settings({"SMTP_HOST": "other"}, env_file=env_file).smtp_host == "other"


@pytest.mark.slow  # runs `petitions create-admin` as a process, twice
def test_create_admin_from_stdin(user_env, tmp_path):
    result = _run(
        ["create-admin", "Owner@Example.org", "--password-stdin"],
        user_env,
        tmp_path,
        stdin="correct horse battery staple\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created owner" in result.stdout
    short = _run(
        ["create-admin", "other@example.org", "--password-stdin"],
        user_env,
        tmp_path,
        stdin="short\n",
    )
    assert short.returncode == 2 and "at least" in short.stderr
