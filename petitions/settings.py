"""Settings, read once from the environment (or a `.env` file) into a frozen dataclass."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from platformdirs import user_data_path

SMTP_TLS_MODES = ("none", "starttls", "tls")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")  # logs.py: lines for people, or one JSON object per line
# DATABASE_POOLER: `none`, PostgreSQL or a session-mode pool; `pgbouncer`, transaction
# mode without prepared statements (PgBouncer before 1.21, or max_prepared_statements
# = 0): asyncpg's statement cache is off; `pgbouncer-prepared`, transaction mode with
# PgBouncer 1.21+'s max_prepared_statements: the cache stays on.
DATABASE_POOLERS = ("none", "pgbouncer", "pgbouncer-prepared")
DEFAULT_PUBLIC_MIN_GROUP = 5
# Retention periods in days (README's settings table and docs/operations.md describe them).
DEFAULT_RETENTION_UNVERIFIED_DAYS = 14
DEFAULT_RETENTION_NETWORK_DAYS = 30
DEFAULT_RETENTION_REJECTED_DAYS = 30
MAX_RETENTION_DAYS = 3650
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128")
DEFAULT_TRENDING_ALERT_PER_HOUR = 200
# A few emails a day per mailbox; two resent confirmations a day per signature; a
# network's cap sits well above SIGN_LIMIT_PER_HOUR, so an office sharing one
# address still gets every confirmation.
DEFAULT_MAIL_PER_MAILBOX_PER_DAY = 3
DEFAULT_MAIL_RESEND_PER_DAY = 2
DEFAULT_MAIL_PER_NETWORK_PER_HOUR = 200
DEFAULT_OUTBOX_LEASE_SECONDS = 120  # well past aiosmtplib's 30 s per SMTP command
DEFAULT_REPLICA_MAX_LAG = 10  # seconds
REPLICA_URL_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


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
    log_format: str = "text"
    # Not a documented setting: whether this process delivers email in the
    # background. `petitions serve --workers N --no-worker` sets PETITIONS_NO_WORKER
    # for its uvicorn worker processes, which read the settings afresh.
    run_outbox_worker: bool = True
    # A country (or any other breakdown) with fewer counted signatures than this
    # is never named publicly (see disclosure.py).
    public_min_group: int = DEFAULT_PUBLIC_MIN_GROUP
    # Retention (petitions/retention.py enforces them; the privacy page shows them).
    # Unconfirmed signatures are deleted, with their emails, after this many days;
    # emails that failed for good are stripped after the same period.
    retention_unverified_days: int = DEFAULT_RETENTION_UNVERIFIED_DAYS
    # A signature's keyed network hash (abuse detection) is dropped after this many days.
    retention_network_days: int = DEFAULT_RETENTION_NETWORK_DAYS
    # A rejected signature loses its personal data this many days after the rejection.
    retention_rejected_days: int = DEFAULT_RETENTION_REJECTED_DAYS
    # Every signature of a petition loses its personal data (staying counted) this
    # many days after the petition closes; None: never.
    anonymise_after_close_days: int | None = None
    # Encryption at rest (see crypto.py): the data key, and older keys accepted for
    # reading while `petitions rotate-key` re-seals. Unset: derived from SECRET_KEY.
    data_key: str | None = None
    data_key_previous: tuple[str, ...] = ()
    # The transparency log's signing key (log_keys.py): any text of at least 32
    # characters, hashed into an Ed25519 key. Unset: derived from SECRET_KEY.
    log_key: str | None = None
    # A new signed tree head at most this often while a petition's log grows
    # (transparency.py); a minute at the latest, as the issue of the log promises.
    log_head_seconds: int = 10
    # Past this many signatures in an hour from one network or email domain on one
    # petition, a submission is refused (429) and nothing is stored (sign_limits.py);
    # 0: never refused. Unset: SIGN_CEILING_FACTOR times SIGN_LIMIT_PER_HOUR.
    sign_ceiling_per_hour: int = 50 * 20
    # The admins get an email when one network or email domain signs this many more
    # times in an hour than its usual hourly rate (trending.py); 0: no alerts.
    trending_alert_per_hour: int = DEFAULT_TRENDING_ALERT_PER_HOUR
    # Mail caps (see mail.py): emails anyone can make us send by typing an address
    # (confirmations, reminders, resends). 0: no cap.
    mail_per_mailbox_per_day: int = DEFAULT_MAIL_PER_MAILBOX_PER_DAY
    mail_resend_per_day: int = DEFAULT_MAIL_RESEND_PER_DAY
    mail_per_network_per_hour: int = DEFAULT_MAIL_PER_NETWORK_PER_HOUR
    # Read replicas (replicas.py): streaming standbys of DATABASE_URL's database that
    # answer the public read paths; one skipped while it lags more than REPLICA_MAX_LAG
    # seconds behind the primary.
    database_replica_urls: tuple[str, ...] = ()
    replica_max_lag: int = DEFAULT_REPLICA_MAX_LAG
    # Owners must log in with a second factor (totp.py); an owner without one is
    # sent to set it up after logging in and can do nothing else until then.
    require_totp_for_owners: bool = False
    # Host names the site answers to (hosts.py); None: the host of BASE_URL (and the
    # loopback names when that is a loopback one).
    allowed_hosts: tuple[str, ...] | None = None
    # False when BASE_URL was not given: `petitions serve` then uses its own address.
    base_url_given: bool = True
    # /metrics answers these networks, or anyone with METRICS_TOKEN as a bearer token.
    metrics_networks: tuple[str, ...] = DEFAULT_METRICS_NETWORKS
    metrics_token: str | None = None
    # How long an outbox worker holds the email it is sending (delivery.py): past it,
    # a worker that died mid-send is taken for dead and another sends the email.
    outbox_lease_seconds: int = DEFAULT_OUTBOX_LEASE_SECONDS
    # A direct (or session-pooled) address of the same database for what needs a
    # session of its own: LISTEN, migrations, the outbox worker, the CLI commands
    # (docs/operations.md, "Connection pooler"). None: DATABASE_URL.
    database_session_url: str | None = None
    # What DATABASE_URL points at: PostgreSQL itself (or a session-mode pool), or a
    # transaction-mode PgBouncer, with or without prepared statements (DATABASE_POOLERS).
    database_pooler: str = "none"

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def session_url(self) -> str | None:
        """The address for connections that keep session state."""
        return self.database_session_url or self.database_url

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
    database_session_url, database_pooler = _session_and_pooler(get, database_url)
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
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        raise SettingsError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}.")

    base_url = (get("BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsError("BASE_URL must start with http:// or https://.")

    return Settings(
        database_url=database_url,
        database_session_url=database_session_url,
        database_pooler=database_pooler,
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
        sign_ceiling_per_hour=_sign_ceiling(get),
        log_level=log_level,
        log_format=log_format,
        database_replica_urls=_replica_urls(get("DATABASE_REPLICA_URL"), database_url),
        replica_max_lag=_integer(
            get("REPLICA_MAX_LAG"), "REPLICA_MAX_LAG", DEFAULT_REPLICA_MAX_LAG, 1, 3600
        ),
        allowed_hosts=_host_patterns(get("ALLOWED_HOSTS")),
        base_url_given=get("BASE_URL") is not None,
        metrics_networks=_networks(get("METRICS_NETWORKS"), "METRICS_NETWORKS")
        or DEFAULT_METRICS_NETWORKS,
        metrics_token=_metrics_token(get("METRICS_TOKEN")),
        outbox_lease_seconds=_integer(
            get("OUTBOX_LEASE_SECONDS"),
            "OUTBOX_LEASE_SECONDS",
            DEFAULT_OUTBOX_LEASE_SECONDS,
            2,
            3600,
        ),
        run_outbox_worker=get("PETITIONS_NO_WORKER") is None,
        public_min_group=_integer(
            get("PUBLIC_MIN_GROUP"), "PUBLIC_MIN_GROUP", DEFAULT_PUBLIC_MIN_GROUP, 1, 1000
        ),
        retention_unverified_days=_days(
            get("RETENTION_UNVERIFIED_DAYS"),
            "RETENTION_UNVERIFIED_DAYS",
            DEFAULT_RETENTION_UNVERIFIED_DAYS,
        ),
        retention_network_days=_days(
            get("RETENTION_NETWORK_DAYS"), "RETENTION_NETWORK_DAYS", DEFAULT_RETENTION_NETWORK_DAYS
        ),
        retention_rejected_days=_days(
            get("RETENTION_REJECTED_DAYS"),
            "RETENTION_REJECTED_DAYS",
            DEFAULT_RETENTION_REJECTED_DAYS,
        ),
        anonymise_after_close_days=_days(
            get("ANONYMISE_AFTER_CLOSE_DAYS"), "ANONYMISE_AFTER_CLOSE_DAYS", None
        ),
        data_key=_data_key(get("DATA_KEY"), "DATA_KEY"),
        log_key=_data_key(get("LOG_KEY"), "LOG_KEY"),
        log_head_seconds=_integer(get("LOG_HEAD_SECONDS"), "LOG_HEAD_SECONDS", 10, 0, 60),
        require_totp_for_owners=_yes_no(get("REQUIRE_TOTP_FOR_OWNERS"), "REQUIRE_TOTP_FOR_OWNERS"),
        trending_alert_per_hour=_integer(
            get("TRENDING_ALERT_PER_HOUR"),
            "TRENDING_ALERT_PER_HOUR",
            DEFAULT_TRENDING_ALERT_PER_HOUR,
            0,
            10**6,
        ),  # fmt: skip
        data_key_previous=tuple(
            _data_key(k.strip(), "DATA_KEY_PREVIOUS")
            for k in (get("DATA_KEY_PREVIOUS") or "").split(",")
            if k.strip()
        ),
        mail_per_mailbox_per_day=_integer(
            get("MAIL_PER_MAILBOX_PER_DAY"),
            "MAIL_PER_MAILBOX_PER_DAY",
            DEFAULT_MAIL_PER_MAILBOX_PER_DAY,
            0,
            1000,
        ),
        mail_resend_per_day=_integer(
            get("MAIL_RESEND_PER_DAY"), "MAIL_RESEND_PER_DAY", DEFAULT_MAIL_RESEND_PER_DAY, 0, 1000
        ),
        mail_per_network_per_hour=_integer(
            get("MAIL_PER_NETWORK_PER_HOUR"),
            "MAIL_PER_NETWORK_PER_HOUR",
            DEFAULT_MAIL_PER_NETWORK_PER_HOUR,
            0,
            10**6,
        ),
    )


def _session_and_pooler(get, database_url: str | None) -> tuple[str | None, str]:
    """DATABASE_SESSION_URL and DATABASE_POOLER, checked against each other."""
    session_url = get("DATABASE_SESSION_URL")
    pooler = (get("DATABASE_POOLER") or "none").lower()
    if pooler not in DATABASE_POOLERS:
        raise SettingsError(
            f"DATABASE_POOLER must be one of {', '.join(DATABASE_POOLERS)}, not {pooler!r}."
        )
    if session_url is not None and database_url is None:
        raise SettingsError("DATABASE_SESSION_URL needs DATABASE_URL (the same database).")
    if pooler != "none" and session_url is None:
        raise SettingsError(
            f"DATABASE_POOLER={pooler} needs DATABASE_SESSION_URL: LISTEN, migrations and "
            "the outbox worker need a session of their own, which a transaction-mode pooler "
            "does not keep. Set it to PostgreSQL's own address (or a session-mode pool)."
        )
    return session_url, pooler


def _yes_no(raw: str | None, name: str) -> bool:
    if raw is None or raw.lower() in ("0", "false", "no", "off"):
        return False
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0 (yes or no), not {raw!r}.")


def _host_patterns(raw: str | None) -> tuple[str, ...] | None:
    """ALLOWED_HOSTS: host names, `*.example.org` for every name under it, or `*`."""
    if raw is None:
        return None
    patterns = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    for pattern in patterns:
        name = pattern[2:] if pattern.startswith("*.") else pattern
        if pattern != "*" and not _host_name(name):
            raise SettingsError(
                f"ALLOWED_HOSTS: {pattern!r} is not a host name (no scheme or port; "
                "`*.example.org` for every name under example.org)."
            )
    return patterns or None


def _host_name(name: str) -> bool:
    """A DNS name or an IP address (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return bool(name) and not any(c in name for c in "*/:@[] ")


def _networks(raw: str | None, name: str) -> tuple[str, ...]:
    networks = tuple(n.strip() for n in (raw or "").split(",") if n.strip())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}: {network!r} is not an address or network such as 10.0.0.0/8."
            ) from None
    return networks


def _metrics_token(raw: str | None) -> str | None:
    if raw is not None and len(raw) < 24:
        raise SettingsError("METRICS_TOKEN must be at least 24 characters long.")
    return raw


def _replica_urls(raw: str | None, database_url: str | None) -> tuple[str, ...]:
    """DATABASE_REPLICA_URL: comma-separated postgresql:// URLs. A bad one is named by
    its place in the list, never quoted: it may hold a password."""
    urls = tuple(u.strip() for u in (raw or "").split(",") if u.strip())
    if urls and database_url is None:
        raise SettingsError(
            "DATABASE_REPLICA_URL needs DATABASE_URL: replicas follow a primary you run, "
            "not the embedded server."
        )
    for place, url in enumerate(urls, 1):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in REPLICA_URL_SCHEMES or not parts.path.strip("/"):
            raise SettingsError(
                f"DATABASE_REPLICA_URL: entry {place} is not a postgresql://user:password@"
                "host:port/database URL (several are separated by commas)."
            )
    return urls


SIGN_CEILING_FACTOR = 20


def _sign_ceiling(get) -> int:
    limit = _integer(get("SIGN_LIMIT_PER_HOUR"), "SIGN_LIMIT_PER_HOUR", 50, 0, 10**6)
    ceiling = _integer(
        get("SIGN_CEILING_PER_HOUR"), "SIGN_CEILING_PER_HOUR", SIGN_CEILING_FACTOR * limit, 0,
        SIGN_CEILING_FACTOR * 10**6,
    )  # fmt: skip
    if ceiling and ceiling < limit:
        raise SettingsError(
            "SIGN_CEILING_PER_HOUR must be 0 (no ceiling) or at least SIGN_LIMIT_PER_HOUR."
        )
    return ceiling


def _data_key(raw: str | None, name: str) -> str | None:
    if raw is not None and len(raw) < 32:
        raise SettingsError(
            f"{name} must be at least 32 characters long. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return raw


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


def _days(raw: str | None, name: str, default: int | None) -> int | None:
    """A retention period in days; with no default, unset (or `never`) means None."""
    if default is None and (raw is None or raw.lower() == "never"):
        return None
    return _integer(raw, name, default or 1, 1, MAX_RETENTION_DAYS)


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
