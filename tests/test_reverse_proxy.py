"""The nginx configuration of docs/operations.md, run as written in front of a real
`petitions serve` (with a self-signed certificate for its host name)."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from served import serve, stop

from conftest import free_port, make_petition, wait_until

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
DOCS = Path(__file__).parent.parent / "docs" / "operations.md"
HOST = "petitions.example.org"
# The share buttons' addresses (with ours inside, tests/test_sharing.py).
SHARE_LINKS = (
    "https://wa.me/",
    "https://t.me/",
    "https://twitter.com/",
    "https://www.facebook.com/",
)
CERTIFICATES = "/etc/letsencrypt/live/petitions.example.org/"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")


def documented_config() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) == 1, "docs/operations.md shows one nginx configuration"
    return blocks[0]


def self_signed(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def nginx_config(folder: Path, app_port: int, proxy_port: int) -> Path:
    site = (
        documented_config()
        .replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{proxy_port} ssl")
        .replace(CERTIFICATES, f"{folder}/")
    )
    temp = "\n".join(
        f"    {kind}_temp_path {folder}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    path = folder / "nginx.conf"
    path.write_text(
        f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n"
    )
    return path


@pytest.fixture
def folder():
    # Outside pytest's private (0700) tmp_path: nginx's workers run as another user.
    path = Path(tempfile.mkdtemp(prefix="petitions-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_documented_configuration_is_valid(folder):
    self_signed(folder)
    config = nginx_config(folder, free_port(), free_port())
    checked = subprocess.run(
        [NGINX, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow  # nginx and `petitions serve` as processes
async def test_behind_the_documented_nginx(db_url, conn, tmp_path, folder):
    await make_petition(conn)
    app, app_base = serve(
        db_url, tmp_path, "--host", "127.0.0.1",
        BASE_URL=f"https://{HOST}", TRUSTED_PROXIES="127.0.0.1",
    )  # fmt: skip
    self_signed(folder)
    proxy_port = free_port()
    config = nginx_config(folder, int(app_base.rsplit(":", 1)[1]), proxy_port)
    nginx = subprocess.Popen([NGINX, "-c", str(config)], stderr=subprocess.PIPE, text=True)
    proxy = f"https://127.0.0.1:{proxy_port}"
    try:
        async with httpx.AsyncClient(verify=False, timeout=10, headers={"Host": HOST}) as http:

            async def up():
                try:
                    return (await http.get(proxy + "/healthz")).status_code == 200
                except httpx.TransportError:
                    return nginx.poll() is not None  # stop waiting: it exited

            assert await wait_until(up, seconds=20, what="nginx to answer")
            assert nginx.poll() is None, nginx.stderr.read()

            page = await http.get(proxy + "/p/release-them")
            assert page.status_code == 200
            addresses = re.findall(r'(?:href|src|action)="(https?://[^"]+)"', page.text)
            ours = [a for a in addresses if not a.startswith(SHARE_LINKS)]
            assert ours and all(a.startswith(f"https://{HOST}/") for a in ours)
            assert "127.0.0.1" not in page.text

            # /metrics is not served through the proxy; the app alone would refuse it too
            # (TRUSTED_PROXIES makes the client the visitor, not the proxy on loopback).
            assert (await http.get(proxy + "/metrics")).status_code == 404
            async with httpx.AsyncClient(timeout=10) as direct:
                assert (await direct.get(app_base + "/metrics")).status_code == 200
                spoofed = await direct.get(
                    app_base + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}
                )
                assert spoofed.status_code == 403  # a loopback proxy's visitor is not local

            # Another host name is dropped by nginx (444), and refused by the app anyway.
            with pytest.raises(httpx.TransportError):
                await http.get(proxy + "/p/release-them", headers={"Host": "evil.example"})
            async with httpx.AsyncClient(timeout=10) as direct:
                refused = await direct.get(
                    app_base + "/p/release-them", headers={"Host": "evil.example"}
                )
                assert refused.status_code == 400
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
        stop(app)
