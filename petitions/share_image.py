"""The picture a link preview shows: a 1200×630 PNG with the petition's title and count.

Pillow alone draws characters one after another: it neither joins Arabic letters
nor puts right-to-left text in order without libraqm and FriBiDi, which a fresh
machine lacks. So the text is prepared with pip packages: `arabic_reshaper` turns
Arabic-script letters into their joined (presentation) forms, and `bidi` (the
Unicode Bidirectional Algorithm, with mirrored brackets) puts each line in visual
order. Lines are wrapped on the logical text first, then each line is reordered on
its own. The fonts come from pip as well (Noto Sans and Noto Sans Arabic, through
fontpkg), drawn with Pillow's basic layout so the result is the same everywhere.
"""

from __future__ import annotations

import asyncio
import io
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import arabic_reshaper
from bidi.algorithm import get_display
from fontpkg.pil import truetype
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 630
MARGIN = 72
INK = (29, 29, 31)
MUTED = (91, 91, 102)
ACCENT = (179, 38, 30)
TRACK = (236, 232, 228)
PAPER = (255, 255, 255)

LATIN_FONT = "noto-sans"
ARABIC_FONT = "noto-sans-arabic"
TITLE_SIZES = (64, 56, 48, 42)  # tried in turn until the title fits
TITLE_TOP = 96
TITLE_BOTTOM = 400  # the title's lines stay above this
LINE_HEIGHT = 1.4  # Arabic script has tall ascenders and descenders
MAX_TITLE = 240  # characters: more than four lines of the smallest size hold

# Arabic script, its supplements and its presentation forms (what the reshaper makes).
_ARABIC_RANGES = (
    (0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF),
)  # fmt: skip


@dataclass(frozen=True)
class ShareCard:
    """What the picture says, already translated and formatted."""

    title: str
    count: str
    footer: str
    progress: float | None = None  # share of the goal reached, 0..1; None without a goal
    rtl: bool = False  # the page's direction, for text with no strong direction of its own


def is_arabic(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _ARABIC_RANGES)


def base_direction(text: str, rtl_default: bool) -> str:
    """'R' or 'L': the direction of the first strong character (Unicode rule P2)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return "R"
        if kind == "L":
            return "L"
    return "R" if rtl_default else "L"


def visual_line(text: str, direction: str) -> str:
    """One line in display order: letters joined, runs reordered, brackets mirrored."""
    if any(is_arabic(c) for c in text):
        text = arabic_reshaper.reshape(text)
    shown = get_display(text, base_dir=direction)
    # Joining and direction controls have done their work; fonts draw them as boxes.
    return "".join(c for c in shown if unicodedata.category(c) != "Cf")


@lru_cache(maxsize=32)
def _font(family: str, size: int, weight: int) -> ImageFont.FreeTypeFont:
    return truetype(family, size, weight=weight, layout_engine=ImageFont.Layout.BASIC)


class _Fonts:
    """One size and weight in both scripts; each run of text gets the font that has it."""

    def __init__(self, size: int, weight: int) -> None:
        self.size = size
        self.latin = _font(LATIN_FONT, size, weight)
        self.arabic = _font(ARABIC_FONT, size, weight)

    def runs(self, visual: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        """Split a display-order line where the script changes; spaces and punctuation
        stay with the run they sit in."""
        runs: list[tuple[str, ImageFont.FreeTypeFont]] = []
        for char in visual:
            if is_arabic(char):
                font = self.arabic
            elif runs and not char.isalnum():
                font = runs[-1][1]
            else:
                font = self.latin
            if runs and runs[-1][1] is font:
                runs[-1] = (runs[-1][0] + char, font)
            else:
                runs.append((char, font))
        return runs

    def width(self, visual: str) -> float:
        return sum(font.getlength(text) for text, font in self.runs(visual))


def wrap(text: str, fonts: _Fonts, max_width: float, direction: str) -> list[str]:
    """Greedy word wrap of logical text, each candidate measured as it will be drawn."""

    def fits(line: str) -> bool:
        return fonts.width(visual_line(line, direction)) <= max_width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > 1 and not fits(current):  # a word wider than the picture
            low, high = 1, len(current) - 1  # the longest start that fits: binary search
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(current[:middle]) else (low, middle - 1)
            lines.append(current[:low])
            current = current[low:]
    if current:
        lines.append(current)
    return lines


def _ellipsise(line: str, fonts: _Fonts, max_width: float, direction: str) -> str:
    while line and fonts.width(visual_line(line + "…", direction)) > max_width:
        line = line[:-1].rstrip()
    return line + "…"


def _draw_line(draw, visual, fonts, baseline, direction, fill) -> None:
    runs = fonts.runs(visual)
    x = MARGIN if direction == "L" else WIDTH - MARGIN - sum(f.getlength(t) for t, f in runs)
    for text, font in runs:
        draw.text((x, baseline), text, font=font, fill=fill, anchor="ls")
        x += font.getlength(text)


def _title_lines(title: str, direction: str) -> tuple[_Fonts, list[str]]:
    max_width = WIDTH - 2 * MARGIN
    title = title[:MAX_TITLE]
    for size in TITLE_SIZES:
        fonts = _Fonts(size, 700)
        lines = wrap(title, fonts, max_width, direction)
        if len(lines) * size * LINE_HEIGHT <= TITLE_BOTTOM - TITLE_TOP:
            return fonts, lines
    room = int((TITLE_BOTTOM - TITLE_TOP) // (fonts.size * LINE_HEIGHT))
    kept = lines[:room]
    kept[-1] = _ellipsise(kept[-1], fonts, max_width, direction)
    return fonts, kept


def render_card(card: ShareCard) -> bytes:
    """The PNG bytes of one share picture (about a tenth of a second: run it in a thread)."""
    with _drawing:  # FreeType faces are not safe to share between threads
        image = Image.new("RGB", (WIDTH, HEIGHT), PAPER)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, WIDTH, 14), fill=ACCENT)

        direction = base_direction(card.title, card.rtl)
        fonts, lines = _title_lines(card.title, direction)
        step = fonts.size * LINE_HEIGHT
        for i, line in enumerate(lines):
            baseline = TITLE_TOP + fonts.size + i * step
            _draw_line(draw, visual_line(line, direction), fonts, baseline, direction, INK)

        count_direction = base_direction(card.count, card.rtl)
        count_fonts = _Fonts(52, 700)
        _draw_line(
            draw, visual_line(card.count, count_direction), count_fonts, 480, count_direction,
            ACCENT,
        )  # fmt: skip
        if card.progress is not None:
            draw.rounded_rectangle((MARGIN, 506, WIDTH - MARGIN, 522), radius=8, fill=TRACK)
            filled = (WIDTH - 2 * MARGIN) * min(max(card.progress, 0.0), 1.0)
            if filled >= 16:
                left = MARGIN if count_direction == "L" else WIDTH - MARGIN - filled
                draw.rounded_rectangle((left, 506, left + filled, 522), radius=8, fill=ACCENT)

        footer_direction = base_direction(card.footer, card.rtl)
        _draw_line(
            draw, visual_line(card.footer, footer_direction), _Fonts(30, 400), HEIGHT - 56,
            footer_direction, MUTED,
        )  # fmt: skip
        out = io.BytesIO()
        image.save(out, "PNG", optimize=True)
        return out.getvalue()


_drawing = threading.Lock()


class ShareImages:
    """Pictures in memory by what they show (a bounded LRU), each drawn once even when
    a crowd of link-preview fetchers asks for it at the same moment."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._images: OrderedDict[tuple, bytes] = OrderedDict()
        self._drawing: dict[tuple, asyncio.Future[bytes]] = {}

    def __len__(self) -> int:
        return len(self._images)

    async def get(self, key: tuple, card: ShareCard) -> bytes:
        if (image := self._images.get(key)) is not None:
            self._images.move_to_end(key)
            return image
        pending = self._drawing.get(key)
        if pending is None:
            pending = self._drawing[key] = asyncio.ensure_future(
                asyncio.to_thread(render_card, card)
            )
            pending.add_done_callback(lambda _: self._finished(key, pending))
        return await asyncio.shield(pending)

    def _finished(self, key: tuple, done: asyncio.Future[bytes]) -> None:
        self._drawing.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._images[key] = done.result()
        self._images.move_to_end(key)
        while len(self._images) > self.size:
            self._images.popitem(last=False)
