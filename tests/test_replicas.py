"""Read replicas (DATABASE_REPLICA_URL) against a real streaming replica.

A primary is made with the embedded server's own binaries (initdb, wal_level=replica),
a standby from it with `pg_basebackup -R`, both on loopback ports. Pausing the standby's
replay (`pg_wal_replay_pause()`) shows where a read was answered: a row written on the
primary meanwhile is missing from what the standby answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from conftest import SECRET, add_signature, free_port, make_petition, wait_until
from petitions.app import create_app
from petitions.migrations import migrate
from petitions.read_your_writes import COOKIE, PURPOSE
from petitions.replicas import ReadReplicas
from petitions.settings import SettingsError, load_settings

PUBLIC_PAGES = (
    "/",
    "/p/{slug}",
    "/p/{slug}/signatures",
    "/p/{slug}/signatures.json",
    "/p/{slug}/signatures?q=signer",
    "/p/{slug}/signatures.json?kind=individual",
    "/p/{slug}/embed",
    "/p/{slug}/count.json",
    "/p/{slug}/print",
    "/healthz",
)


def _bin(tool: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / tool)


@dataclass
class Cluster:
    """A primary and its streaming standby, run as `user` (PostgreSQL refuses root)."""

    root: Path
    user: str | None
    primary_port: int
    replica_port: int

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.root / "replica"

    def url(self, port: int, database: str = "petitions") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [_bin(tool), *args], check=True, user=self.user, timeout=120,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def pg_ctl(self, data_dir: Path, *args: str) -> None:
        # Output to a file: a pipe would stay open in the server and hang the caller.
        self.run("pg_ctl", "-D", str(data_dir), "-l", str(data_dir.parent / "log"), *args)

    def start_replica(self) -> None:
        self.pg_ctl(self.replica_dir, "-w", "start")

    def stop_replica(self) -> None:
        self.pg_ctl(self.replica_dir, "-m", "immediate", "stop")


PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
port = {port}
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
shared_buffers = 16MB
max_connections = 60
"""


def _make_cluster() -> Cluster:
    user = None
    if os.geteuid() == 0:
        from pgserver.utils import ensure_user_exists

        user = "pgserver"
        ensure_user_exists(user)
    root = Path(tempfile.mkdtemp(prefix="petitions-replicas-"))
    root.chmod(0o755)
    if user is not None:
        shutil.chown(root, user)
    cluster = Cluster(root, user, free_port(), free_port())
    try:
        cluster.run("initdb", "-D", str(cluster.primary_dir), "-U", "postgres",
                    "--auth=trust", "--no-sync")  # fmt: skip
        with open(cluster.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(PRIMARY_CONF.format(port=cluster.primary_port))
        with open(cluster.primary_dir / "pg_hba.conf", "a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        cluster.pg_ctl(cluster.primary_dir, "-w", "start")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def _make_replica(cluster: Cluster) -> None:
    """A standby of the primary as it is now (`-R` writes how to follow it)."""
    cluster.run(
        "pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres",
        "-D", str(cluster.replica_dir), "-R", "-X", "stream", "-c", "fast",
    )  # fmt: skip
    with open(cluster.replica_dir / "postgresql.conf", "a") as conf:
        conf.write(f"port = {cluster.replica_port}\n")
    cluster.start_replica()


def _stop_cluster(cluster: Cluster) -> None:
    for data_dir in (cluster.replica_dir, cluster.primary_dir):
        if (data_dir / "postmaster.pid").exists():
            try:
                cluster.pg_ctl(data_dir, "-m", "immediate", "stop")
            except subprocess.CalledProcessError:
                pass
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
async def cluster():
    """A migrated `petitions` database on a primary, and a standby streaming from it."""
    made = await asyncio.to_thread(_make_cluster)
    try:
        admin = await asyncpg.connect(made.url(made.primary_port, "postgres"))
        try:
            await admin.execute("CREATE DATABASE petitions")
        finally:
            await admin.close()
        await migrate(made.primary_url)
        await asyncio.to_thread(_make_replica, made)
        yield made
    finally:
        await asyncio.to_thread(_stop_cluster, made)


@pytest.fixture
async def primary(cluster):
    conn = await asyncpg.connect(cluster.primary_url)
    yield conn
    await conn.close()


@pytest.fixture
async def standby(cluster):
    """A connection to the standby, whose replay is running again after the test."""
    conn = await _standby_connection(cluster)
    try:
        yield conn
    finally:
        if conn.is_closed():
            conn = await _standby_connection(cluster)
        await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()


async def _standby_connection(cluster: Cluster) -> asyncpg.Connection:
    async def connect():
        try:
            return await asyncpg.connect(cluster.replica_url, timeout=2)
        except (OSError, asyncpg.PostgresError):
            return None

    return await wait_until(connect, 30, 0.2, "the standby to accept connections")


@asynccontextmanager
async def running_app(cluster: Cluster, tmp_path: Path, **environ: str):
    """The app in this process on the primary with the standby as its read replica,
    once it has measured the standby (httpx client, app)."""
    settings = load_settings(
        {
            "DATABASE_URL": cluster.primary_url,
            "DATABASE_REPLICA_URL": cluster.replica_url,
            "SECRET_KEY": SECRET,
            "DATA_DIR": str(tmp_path),
            "BASE_URL": "http://testserver",
            "REPLICA_MAX_LAG": "3600",
            **environ,
        },
        env_file=None,
    )
    app = create_app(settings, run_outbox_worker=False)
    app.state.page_cache.seconds = 0  # every request reads afresh
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.replicas.choose() is not None, 20, 0.05,
                         "the replica to be measured")  # fmt: skip
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


async def _pause_replay(standby: asyncpg.Connection) -> None:
    await standby.execute("SELECT pg_wal_replay_pause()")
    await wait_until(
        lambda: standby.fetchval("SELECT pg_get_wal_replay_pause_state() = 'paused'"),
        what="the standby's replay to pause",
    )


async def _on_standby(standby: asyncpg.Connection, petition_id: int, count: int) -> bool:
    return (
        await standby.fetchval(
            "SELECT count(*) FROM signatures WHERE petition_id = $1", petition_id
        )
        == count
    )


async def _listed_names(client: httpx.AsyncClient, slug: str, cookies=None) -> set[str]:
    response = await client.get(f"/p/{slug}/signatures.json", cookies=cookies)
    assert response.status_code == 200
    return {entry.get("name") for entry in response.json()["signatures"]}


async def _new_petition(primary, standby) -> tuple[str, int]:
    slug = f"replica-{uuid.uuid4().hex[:8]}"
    petition_id = await make_petition(primary, slug)
    await add_signature(primary, petition_id, name="First Signer")
    await wait_until(lambda: _on_standby(standby, petition_id, 1), what="the standby to catch up")
    return slug, petition_id


async def _served_by_replica(client, app, primary, standby, slug, petition_id) -> None:
    """A row written while the standby's replay is paused is missing from the public
    list, so the list came from the standby; it appears once replay resumes."""
    marker = f"Marker {uuid.uuid4().hex[:6]}"
    await _pause_replay(standby)
    try:
        await add_signature(primary, petition_id, name=marker)
        assert marker not in await _listed_names(client, slug)
        page = await client.get(f"/p/{slug}/signatures")
        assert page.status_code == 200 and "First Signer" in page.text
        assert marker not in page.text
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")

    async def listed():
        return marker in await _listed_names(client, slug)

    await wait_until(listed, what="the row to reach the list once replay resumed")


@pytest.mark.slow  # a primary, a standby made with pg_basebackup
async def test_public_lists_are_read_from_the_replica(cluster, primary, standby, tmp_path):
    slug, petition_id = await _new_petition(primary, standby)
    async with running_app(cluster, tmp_path) as (client, app):
        await _served_by_replica(client, app, primary, standby, slug, petition_id)

        # The petition page's latest signatories and the home page's list, too.
        await _pause_replay(standby)
        hidden = f"replica-hidden-{uuid.uuid4().hex[:6]}"
        await make_petition(primary, hidden, title="Written while the standby waits")
        marker = "Paused Page Signer"
        await add_signature(primary, petition_id, name=marker)
        page = await client.get(f"/p/{slug}")
        assert page.status_code == 200 and "First Signer" in page.text
        assert marker not in page.text
        home = await client.get("/")
        assert home.status_code == 200 and slug in home.text
        assert hidden not in home.text
        await standby.execute("SELECT pg_wal_replay_resume()")

        async def home_lists_it():
            return hidden in (await client.get("/")).text

        await wait_until(home_lists_it, what="the new petition on the home page")

        # Writes go to the primary (a standby refuses them), and so do forms shown
        # again after a POST: a signature with errors re-renders the page from there.
        await _pause_replay(standby)
        await add_signature(primary, petition_id, name="Seen After Post")
        form = await client.post(
            f"/p/{slug}/sign", data={"kind": "individual", "name": ""},
            headers={"Origin": "http://testserver"},
        )  # fmt: skip
        assert form.status_code == 400 and "Seen After Post" in form.text


@pytest.mark.slow
async def test_a_signer_who_confirms_sees_themselves_on_the_next_page(
    cluster, primary, standby, tmp_path
):
    slug, petition_id = await _new_petition(primary, standby)
    async with running_app(cluster, tmp_path) as (client, app):
        pending = await add_signature(primary, petition_id, status="pending", name="Just Confirmed")
        app.state.page_cache.seconds = 60  # petition pages kept, as in production
        stranger = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        await stranger.get(f"/p/{slug}")  # a copy from before the confirmation, kept
        await _pause_replay(standby)
        link = app.state.tokens.signature_link("verify", pending["public_id"])
        confirmed = await client.get(f"/verify/{link}")
        assert confirmed.status_code == 200
        cookie = confirmed.cookies.get(COOKIE)
        assert cookie, "the confirmation sets the read-after-write cookie"
        # It names nobody: a signed WAL position, nothing of the signature.
        header = confirmed.headers["set-cookie"]
        assert pending["public_id"].hex not in header and "Just" not in header
        assert "HttpOnly" in header and "Max-Age=3605" in header

        # The signer's next pages come from the primary while the standby lacks it
        # (past the kept copy of the petition page)...
        assert "Just Confirmed" in await _listed_names(client, slug)
        assert "Just Confirmed" in (await client.get(f"/p/{slug}")).text
        # ...while a visitor without the cookie is still served by the standby.
        try:
            assert "Just Confirmed" not in await _listed_names(stranger, slug)
            forged = {COOKIE: "999999999999"}  # not signed: ignored
            assert "Just Confirmed" not in await _listed_names(stranger, slug, forged)
            assert "Just Confirmed" not in (await stranger.get(f"/p/{slug}")).text
        finally:
            await stranger.aclose()
        app.state.page_cache.seconds = 0

        # Once the standby has replayed the confirmation, the cookie's reads go back to it.
        await standby.execute("SELECT pg_wal_replay_resume()")
        await primary.execute("SELECT pg_current_xact_id()")  # a commit flushes the WAL
        written = int(app.state.tokens.read(PURPOSE, cookie))
        await wait_until(lambda: app.state.replicas.choose(written), what="replay to pass it")
        await _served_by_replica(client, app, primary, standby, slug, petition_id)


@pytest.mark.slow
async def test_a_replica_too_far_behind_is_skipped(cluster, primary, standby, tmp_path):
    slug, petition_id = await _new_petition(primary, standby)
    async with running_app(cluster, tmp_path, REPLICA_MAX_LAG="1") as (client, app):
        replica = app.state.replicas.replicas[0]
        await _pause_replay(standby)
        await add_signature(primary, petition_id, name="Written Meanwhile")
        await wait_until(lambda: replica.lag is not None and replica.lag > 1.5,
                         what="the standby to fall behind")  # fmt: skip
        assert "Written Meanwhile" in await _listed_names(client, slug)
        assert "Written Meanwhile" in (await client.get(f"/p/{slug}")).text
        metrics = (await client.get("/metrics")).text
        assert 'petitions_replica_up{replica="0"} 0.0' in metrics
        lag = [line for line in metrics.splitlines() if line.startswith("petitions_replica_lag")]
        assert len(lag) == 1 and float(lag[0].split()[-1]) > 1.5
        assert cluster.replica_url not in metrics and "postgres@" not in metrics

        await standby.execute("SELECT pg_wal_replay_resume()")
        await wait_until(lambda: replica.lag == 0.0, what="the standby to catch up")
        assert 'petitions_replica_up{replica="0"} 1.0' in (await client.get("/metrics")).text


@pytest.mark.slow
async def test_a_replica_that_is_down_is_skipped_until_it_is_back(
    cluster, primary, standby, tmp_path
):
    slug, petition_id = await _new_petition(primary, standby)
    async with running_app(cluster, tmp_path) as (client, app):
        replica = app.state.replicas.replicas[0]
        for path in PUBLIC_PAGES:  # the replica pool holds connections now
            assert (await client.get(path.format(slug=slug))).status_code == 200, path
        await standby.close()
        await asyncio.to_thread(cluster.stop_replica)
        try:
            # At once (the pool's connections are dead), and once it is known down:
            # every public page answers from the primary.
            for _round in range(2):
                for path in PUBLIC_PAGES:
                    response = await client.get(path.format(slug=slug))
                    assert response.status_code == 200, (path, response.status_code)
                await wait_until(lambda: replica.lag is None and replica.backoff > 0,
                                 what="the replica to be known down")  # fmt: skip
            await add_signature(primary, petition_id, name="While It Was Down")
            assert "While It Was Down" in await _listed_names(client, slug)
            metrics = (await client.get("/metrics")).text
            assert 'petitions_replica_up{replica="0"} 0.0' in metrics
            assert "petitions_replica_lag_seconds{" not in metrics
        finally:
            await asyncio.to_thread(cluster.start_replica)
        standby = await _standby_connection(cluster)
        try:
            await wait_until(lambda: app.state.replicas.choose() is not None, 30, 0.1,
                             "the replica to be used again")  # fmt: skip
            await _served_by_replica(client, app, primary, standby, slug, petition_id)
        finally:
            await standby.close()


# Without replicas, and the parts on their own ---------------------------------------


async def test_without_replicas_nothing_changes(client, conn, app):
    """No DATABASE_REPLICA_URL: no replica set, no cookie after a confirmation."""
    assert app.state.replicas is None
    petition_id = await make_petition(conn)
    pending = await add_signature(conn, petition_id, status="pending", name="Plain Signer")
    link = app.state.tokens.signature_link("verify", pending["public_id"])
    confirmed = await client.get(f"/verify/{link}")
    assert confirmed.status_code == 200 and "set-cookie" not in confirmed.headers
    assert "Plain Signer" in await _listed_names(client, "release-them")


def _settings(**environ: str):
    base = {"DATABASE_URL": "postgresql://u:p@db/petitions", "SECRET_KEY": SECRET}
    return load_settings({**base, **environ}, env_file=None)


def test_replica_settings():
    assert _settings().database_replica_urls == ()
    two = _settings(
        DATABASE_REPLICA_URL=" postgresql://u:p@r1:5432/petitions, postgres://u:p@r2/petitions"
    )
    assert two.database_replica_urls == (
        "postgresql://u:p@r1:5432/petitions",
        "postgres://u:p@r2/petitions",
    )
    assert two.replica_max_lag == 10
    assert _settings(REPLICA_MAX_LAG="3").replica_max_lag == 3
    for bad in ("mysql://u:secretpw@r1/db", "postgresql://u:secretpw@r1:port/db",
                "postgresql://u:secretpw@r1", "r1:5432"):  # fmt: skip
        with pytest.raises(SettingsError) as error:
            _settings(DATABASE_REPLICA_URL=f"postgresql://u:p@ok/db,{bad}")
        assert "entry 2" in str(error.value) and "secretpw" not in str(error.value)
    with pytest.raises(SettingsError, match="REPLICA_MAX_LAG"):
        _settings(REPLICA_MAX_LAG="0")
    with pytest.raises(SettingsError, match="needs DATABASE_URL"):
        load_settings(
            {"DATABASE_REPLICA_URL": "postgresql://u:p@r1/db", "SECRET_KEY": SECRET},
            env_file=None,
        )


def test_lag_is_measured_on_the_primary_s_wal_positions():
    """A replica's lag: how long ago the primary first stood where it has not got to."""
    replicas = ReadReplicas(None, (), max_lag=10)
    assert replicas.lag_of(100, now=0.0) is None  # nothing to measure against yet
    replicas._note_position(100, now=1000.0)
    # Behind the first position seen: behind for as long as we remember, at least.
    assert replicas.lag_of(50, now=1000.0) >= 60
    assert replicas.lag_of(100, now=1000.0) == 0.0
    replicas._note_position(100, now=1001.0)  # a quiet primary: no lag
    replicas._note_position(200, now=1002.0)
    replicas._note_position(300, now=1003.0)
    assert replicas.lag_of(100, now=1004.0) == pytest.approx(2.0)
    assert replicas.lag_of(250, now=1004.0) == pytest.approx(1.0)
    assert replicas.lag_of(300, now=1500.0) == 0.0
    replicas._note_position(400, now=1500.0)  # old positions are forgotten...
    assert len(replicas._positions) < 4
    assert replicas.lag_of(150, now=1500.0) > 60  # ...but never the lag they prove
