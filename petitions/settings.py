"""Settings, read once from the environment (or a `.env` file) into a frozen dataclass."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dotenv import dotenv_values
from platformdirs import user_data_path

SMTP_TLS_MODES = ("none", "starttls", "tls")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    secret_key: str
    base_url: str
    smtp_host: str | None
    smtp_port: int
    smtp_user: str | None
    smtp_password: str | None
    smtp_tls: str
    mail_from: str
    trusted_proxies: tuple[str, ...]
    sign_limit_per_hour: int
    log_level: str
    # Not a documented setting: whether this process delivers email in the
    # background. `petitions serve --workers N --no-worker` sets PETITIONS_NO_WORKER
    # for its uvicorn worker processes, which read the settings afresh.
    run_outbox_worker: bool = True

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Read settings; the process environment wins over the `.env` file."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = values.get(name, "").strip()
        return value or None

    database_url = get("DATABASE_URL")
    data_dir = Path(get("DATA_DIR") or user_data_path("petitions")).expanduser().absolute()

    secret_key = get("SECRET_KEY")
    if secret_key is None:
        if database_url is not None:
            raise SettingsError(
                "SECRET_KEY is required when DATABASE_URL is set: every app process must share "
                "one key. Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        secret_key = _stored_secret(data_dir)
    elif len(secret_key) < 32:
        raise SettingsError("SECRET_KEY must be at least 32 characters long.")

    smtp_tls = (get("SMTP_TLS") or "none").lower()
    if smtp_tls not in SMTP_TLS_MODES:
        raise SettingsError(
            f"SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, not {smtp_tls!r}."
        )
    default_port = {"none": 25, "starttls": 587, "tls": 465}[smtp_tls]

    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}.")

    base_url = (get("BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsError("BASE_URL must start with http:// or https://.")

    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=secret_key,
        base_url=base_url,
        smtp_host=get("SMTP_HOST"),
        smtp_port=_integer(get("SMTP_PORT"), "SMTP_PORT", default_port, 1, 65535),
        smtp_user=get("SMTP_USER"),
        smtp_password=get("SMTP_PASSWORD"),
        smtp_tls=smtp_tls,
        mail_from=get("MAIL_FROM") or "Petitions <petitions@localhost>",
        trusted_proxies=tuple(
            p.strip() for p in (get("TRUSTED_PROXIES") or "").split(",") if p.strip()
        ),
        sign_limit_per_hour=_integer(
            get("SIGN_LIMIT_PER_HOUR"), "SIGN_LIMIT_PER_HOUR", 50, 0, 10**6
        ),
        log_level=log_level,
        run_outbox_worker=get("PETITIONS_NO_WORKER") is None,
    )


def _integer(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}.") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}.")
    return value


def _stored_secret(data_dir: Path) -> str:
    """The embedded default: generate a key once and keep it beside the database."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".secret_key.{os.getpid()}"
        draft.write_text(secrets.token_urlsafe(48))
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic: the first process to link wins, others read its key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise SettingsError(
            f"The stored secret key in {path} is damaged; remove it to make a new one."
        )
    return key
