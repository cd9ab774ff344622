"""The iframe snippet campaigners paste into other sites, sized to its content.

The embed page (templates/embed.html, static/frame.js) posts
`{type: "petitions:resize", slug, height}` to the page around it whenever its
content changes height. The snippet's script sets the iframe's height from a
message only when it comes from this server's origin and from that very iframe,
so no other frame or site can resize it. Without the script (a site that strips
scripts) the iframe keeps its `height` attribute, chosen to hold the content on
a phone; on a wider screen there is then some blank space below, never a
cut-off form.
"""

from __future__ import annotations

import json
import re
from html import escape
from urllib.parse import urlsplit

RESIZE_MESSAGE = "petitions:resize"
MAX_HEIGHT = 20000  # px: what a message may ask for, at most

# What the iframe shows when nothing resizes it: the embed page's height on a
# phone, with room for longer translations (at 360 px wide the individual form is
# about 1,420 px, the organisation form 1,790, the counter alone 300; at 320 px,
# 1,530, 1,950 and 300). tests/test_embed_resize.py checks that they fit.
FORM_HEIGHT = 2100
COUNTER_HEIGHT = 340


def origin_of(base_url: str) -> str:
    """scheme://host[:port] of BASE_URL, as browsers write `event.origin`."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def frame_id(slug: str, query: str = "") -> str:
    suffix = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
    return f"petition-{slug}" + (f"-{suffix}" if suffix else "")


def iframe_snippet(base_url: str, slug: str, query: str, height: int, title: str) -> str:
    """An iframe of /p/{slug}/embed{?query} and the script that fits it to its content."""
    ident = frame_id(slug, query)
    src = f"{base_url}/p/{slug}/embed" + (f"?{query}" if query else "")
    origin = json.dumps(origin_of(base_url))
    return (
        f'<iframe id="{ident}" src="{src}" title="{escape(title)}" width="100%" height="{height}"'
        ' style="border:0;display:block;width:100%;max-width:100%"></iframe>\n'
        "<script>\n"
        'addEventListener("message", function (e) {\n'
        f'  var frame = document.getElementById("{ident}"), data = e.data;\n'
        f"  if (!frame || e.origin !== {origin} || e.source !== frame.contentWindow) return;\n"
        f'  if (data && data.type === "{RESIZE_MESSAGE}" && data.height > 0 && data.height < {MAX_HEIGHT})\n'
        '    frame.style.height = Math.ceil(data.height) + "px";\n'
        "});\n"
        "</script>"
    )
