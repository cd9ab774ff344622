"""Who is asking: the client's network (never its address) and whether a browser's
POST came from one of our own pages."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def client_network(address: str | None) -> str | None:
    """The client's network: an IPv4 /24 or IPv6 /48, never the address itself."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(origin_header: str | None, request_origin: str, base_url: str) -> bool:
    """A browser's POST names the page it came from (Origin, else Referer); another
    site's page may not post here.

    Our own embed pages sit in other sites' iframes but are served from here, so
    their posts carry our origin too. No header at all: not a browser (or a
    privacy tool), and the form's own token still applies. `null` (a sandboxed
    frame, a file) is refused."""
    if not origin_header:
        return True
    if origin_header == "null":
        return False
    return origin_of(origin_header) in {request_origin.lower(), origin_of(base_url)}
