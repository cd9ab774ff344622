"""Settings from the environment and `.env`, read once and checked. No database."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from petitions.settings import SettingsError, load_settings

KEY = "k" * 32  # the shortest SECRET_KEY allowed
EXTERNAL = "postgresql://user:password@db.example:5432/petitions"


def load(tmp_path: Path, **environ: str):
    """Settings from `environ` alone (no .env), with the data folder under tmp_path."""
    return load_settings({"DATA_DIR": str(tmp_path), **environ}, env_file=None)


def test_defaults(tmp_path):
    settings = load(tmp_path)
    assert settings.database_url is None and settings.embedded
    assert settings.data_dir == tmp_path
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.smtp_host is None
    assert settings.smtp_port == 25
    assert settings.smtp_user is None and settings.smtp_password is None
    assert settings.smtp_tls == "none"
    assert settings.mail_from == "Petitions <petitions@localhost>"
    assert settings.trusted_proxies == ()
    assert settings.sign_limit_per_hour == 50
    assert settings.log_level == "INFO"
    assert len(settings.secret_key) >= 32


def test_every_setting_is_read(tmp_path):
    settings = load(
        tmp_path,
        DATABASE_URL=EXTERNAL,
        SECRET_KEY=KEY,
        BASE_URL="https://petitions.example.org",
        SMTP_HOST="mail.example.org",
        SMTP_PORT="2525",
        SMTP_USER="mailer",
        SMTP_PASSWORD="hunter2",
        SMTP_TLS="starttls",
        MAIL_FROM="Campaign <campaign@example.org>",
        TRUSTED_PROXIES="10.0.0.1",
        SIGN_LIMIT_PER_HOUR="7",
        LOG_LEVEL="DEBUG",
    )
    assert settings.database_url == EXTERNAL and not settings.embedded
    assert settings.secret_key == KEY
    assert settings.base_url == "https://petitions.example.org"
    assert (settings.smtp_host, settings.smtp_port) == ("mail.example.org", 2525)
    assert (settings.smtp_user, settings.smtp_password) == ("mailer", "hunter2")
    assert settings.smtp_tls == "starttls"
    assert settings.mail_from == "Campaign <campaign@example.org>"
    assert settings.trusted_proxies == ("10.0.0.1",)
    assert settings.sign_limit_per_hour == 7
    assert settings.log_level == "DEBUG"
    assert settings.with_database("postgresql://other/db").database_url == "postgresql://other/db"


def test_blank_values_count_as_unset(tmp_path):
    settings = load(tmp_path, SMTP_HOST="  ", BASE_URL="", SMTP_PORT=" ", LOG_LEVEL="")
    assert settings.smtp_host is None
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.smtp_port == 25
    assert settings.log_level == "INFO"


def test_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({"DATA_DIR": "data"}, env_file=None).data_dir == tmp_path / "data"
    home = load_settings({"DATA_DIR": "~/petitions-data", "SECRET_KEY": KEY}, env_file=None)
    assert home.data_dir == Path.home() / "petitions-data"


def test_the_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"DATA_DIR={tmp_path}\n"
        "SMTP_HOST=file.example\n"
        "SMTP_TLS=starttls\n"
        "LOG_LEVEL=WARNING\n"
        "MAIL_FROM='From the file <file@example.org>'\n"
    )
    from_file = load_settings({}, env_file=env_file)
    assert from_file.smtp_host == "file.example" and from_file.smtp_port == 587
    assert from_file.log_level == "WARNING"
    assert from_file.mail_from == "From the file <file@example.org>"
    both = load_settings({"SMTP_HOST": "env.example", "LOG_LEVEL": "ERROR"}, env_file=env_file)
    assert both.smtp_host == "env.example" and both.log_level == "ERROR"
    assert both.smtp_tls == "starttls"  # what the environment does not say, the file does
    # A missing file is no error.
    assert (
        load_settings({"DATA_DIR": str(tmp_path)}, env_file=tmp_path / "absent").smtp_host is None
    )


def test_the_process_environment_is_read_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMTP_HOST", "from-os-environ.example")
    assert load_settings(env_file=None).smtp_host == "from-os-environ.example"


def test_secret_key_is_required_with_database_url(tmp_path):
    with pytest.raises(SettingsError, match="SECRET_KEY is required when DATABASE_URL is set"):
        load(tmp_path, DATABASE_URL=EXTERNAL)
    assert not (tmp_path / "secret_key").exists()  # no key is made up for a shared database
    assert load(tmp_path, DATABASE_URL=EXTERNAL, SECRET_KEY=KEY).secret_key == KEY


def test_secret_key_must_be_long_enough(tmp_path):
    with pytest.raises(SettingsError, match="at least 32 characters"):
        load(tmp_path, SECRET_KEY=KEY[:-1])
    with pytest.raises(SettingsError, match="at least 32 characters"):
        load(tmp_path, DATABASE_URL=EXTERNAL, SECRET_KEY="short")
    assert load(tmp_path, SECRET_KEY=KEY).secret_key == KEY
    assert not (tmp_path / "secret_key").exists()  # a given key is not stored


def test_smtp_tls_is_one_of_three_modes(tmp_path):
    for bad in ("ssl3", "yes", "true", "ssl"):
        with pytest.raises(SettingsError, match="SMTP_TLS must be one of none, starttls, tls"):
            load(tmp_path, SMTP_TLS=bad)
    assert load(tmp_path, SMTP_TLS="STARTTLS").smtp_tls == "starttls"


def test_smtp_port_defaults_by_tls_mode_and_is_checked(tmp_path):
    defaults = {
        mode: load(tmp_path, SMTP_TLS=mode).smtp_port for mode in ("none", "starttls", "tls")
    }
    assert defaults == {"none": 25, "starttls": 587, "tls": 465}
    assert load(tmp_path, SMTP_TLS="tls", SMTP_PORT="2465").smtp_port == 2465
    assert load(tmp_path, SMTP_PORT="1").smtp_port == 1
    assert load(tmp_path, SMTP_PORT="65535").smtp_port == 65535
    for bad in ("0", "65536", "-25"):
        with pytest.raises(SettingsError, match="SMTP_PORT must be between 1 and 65535"):
            load(tmp_path, SMTP_PORT=bad)
    for bad in ("smtp", "25.0", "0x19"):
        with pytest.raises(SettingsError, match="SMTP_PORT must be a whole number"):
            load(tmp_path, SMTP_PORT=bad)


def test_log_level_is_checked(tmp_path):
    for bad in ("verbose", "TRACE", "10"):
        with pytest.raises(SettingsError, match="LOG_LEVEL must be one of"):
            load(tmp_path, LOG_LEVEL=bad)
    assert load(tmp_path, LOG_LEVEL="debug").log_level == "DEBUG"


def test_base_url_is_http_or_https_without_a_trailing_slash(tmp_path):
    assert load(tmp_path, BASE_URL="https://example.org/").base_url == "https://example.org"
    assert load(tmp_path, BASE_URL="http://example.org/p//").base_url == "http://example.org/p"
    assert load(tmp_path, BASE_URL="https://example.org").base_url == "https://example.org"
    for bad in ("example.org", "ftp://example.org", "//example.org", "javascript:alert(1)"):
        with pytest.raises(SettingsError, match="BASE_URL must start with http:// or https://"):
            load(tmp_path, BASE_URL=bad)


def test_sign_limit_per_hour_range(tmp_path):
    assert load(tmp_path, SIGN_LIMIT_PER_HOUR="0").sign_limit_per_hour == 0  # never hold
    assert load(tmp_path, SIGN_LIMIT_PER_HOUR="1000000").sign_limit_per_hour == 10**6
    for bad in ("-1", "1000001"):
        with pytest.raises(SettingsError, match="SIGN_LIMIT_PER_HOUR must be between 0 and"):
            load(tmp_path, SIGN_LIMIT_PER_HOUR=bad)
    with pytest.raises(SettingsError, match="SIGN_LIMIT_PER_HOUR must be a whole number"):
        load(tmp_path, SIGN_LIMIT_PER_HOUR="fifty")


def test_trusted_proxies_are_split_on_commas(tmp_path):
    settings = load(tmp_path, TRUSTED_PROXIES=" 10.0.0.1, ,192.168.1.2 ,, ::1,")
    assert settings.trusted_proxies == ("10.0.0.1", "192.168.1.2", "::1")
    assert load(tmp_path, TRUSTED_PROXIES=" , ").trusted_proxies == ()


def test_the_stored_secret_is_made_once_private_and_reused(tmp_path):
    data_dir = tmp_path / "not" / "there" / "yet"
    first = load_settings({"DATA_DIR": str(data_dir)}, env_file=None).secret_key
    stored = data_dir / "secret_key"
    assert stored.read_text().strip() == first and len(first) >= 32
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no draft left behind
    assert load_settings({"DATA_DIR": str(data_dir)}, env_file=None).secret_key == first
    # Another data folder, another key.
    assert load(tmp_path).secret_key != first


def test_a_given_secret_key_wins_over_the_stored_one(tmp_path):
    stored = load(tmp_path).secret_key
    assert load(tmp_path, SECRET_KEY=KEY).secret_key == KEY != stored


def test_a_damaged_stored_secret_is_refused(tmp_path):
    (tmp_path / "secret_key").write_text("too short\n")
    os.chmod(tmp_path / "secret_key", 0o600)
    with pytest.raises(SettingsError, match="damaged"):
        load(tmp_path)


def test_the_session_address_and_the_pooler(tmp_path):
    plain = load(tmp_path, DATABASE_URL=EXTERNAL, SECRET_KEY=KEY)
    assert plain.database_pooler == "none" and plain.session_url == EXTERNAL
    direct = "postgresql://user:password@db.example:5432/petitions"
    pooled = load(
        tmp_path, SECRET_KEY=KEY, DATABASE_URL="postgresql://user:password@pooler:6432/petitions",
        DATABASE_SESSION_URL=direct, DATABASE_POOLER="PgBouncer",
    )  # fmt: skip
    assert pooled.database_pooler == "pgbouncer" and pooled.session_url == direct
    # A transaction pooler without a session address would lose LISTEN and the locks.
    with pytest.raises(SettingsError, match="needs DATABASE_SESSION_URL"):
        load(tmp_path, DATABASE_URL=EXTERNAL, SECRET_KEY=KEY, DATABASE_POOLER="pgbouncer")
    with pytest.raises(SettingsError, match="DATABASE_POOLER must be one of"):
        load(tmp_path, DATABASE_URL=EXTERNAL, SECRET_KEY=KEY, DATABASE_POOLER="pgpool")
    with pytest.raises(SettingsError, match="needs DATABASE_URL"):
        load(tmp_path, DATABASE_SESSION_URL=EXTERNAL)
