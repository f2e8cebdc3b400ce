"""Text-dense document pages: the kind of picture users send to OCR.

16 deterministic pages, 640-1300 px a side, each a form, an invoice, an
article or a receipt: many lines of varied length and size (headings, body
text, table cells, small print, numbers and punctuation), ruled boxes and
table lines, a paper tint, a little noise and JPEG compression as a scan
has. `pages()` gives the same bytes for the same Pillow and fonts.

Every line drawn is recorded as ground truth (`DocumentPage.lines`: its text
and its box in the page's pixels, testsets/ground_truth.py), one entry per
drawn string: a table cell is a line of its own. testsets/accuracy.py scores
OCR output against them."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from testsets.ground_truth import GroundTruthLine, drawn
from testsets.ocr import font

WORDS = (
    "account address agreement amount annual balance billing branch business certificate charge client "
    "contract customer date delivery department description discount document due employee estimate "
    "freight goods hours insurance invoice item labour limited maintenance manager material monthly "
    "notice number office order payment period phone postal price product project quantity receipt "
    "reference registration remarks report schedule service shipping signature statement subtotal "
    "supplier support tax terms total transfer unit value warehouse weight the of and for with from "
    "per to in on at by is are was this that each all new our your please"
).split()
FIRST = ["Anna", "Lukas", "Maria", "Chen", "Paul", "Sofia", "Jonas", "Emma", "Noah", "Lea"]
LAST = ["Schmidt", "Weber", "Garcia", "Wang", "Novak", "Martin", "Keller", "Rossi", "Berg", "Klein"]
STREETS = ["Hauptstrasse", "Market Street", "Station Road", "Lindenweg", "Harbour Lane", "Park Avenue"]
CITIES = ["Berlin", "Hamburg", "Munich", "Vienna", "Zurich", "London", "Leeds", "Lyon"]
PAGE_KINDS = ("invoice", "form", "article", "receipt")
PAGE_COUNT = 16


@dataclass
class DocumentPage:
    name: str
    data: bytes
    size: tuple[int, int]  # width, height
    lines: list[GroundTruthLine] = field(default_factory=list)  # every line drawn, in drawing order


def _words(rng: random.Random, low: int, high: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))
    return text[0].upper() + text[1:]


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _address(rng: random.Random) -> str:
    return f"{rng.choice(STREETS)} {rng.randint(1, 180)}, {rng.randint(10000, 99999)} {rng.choice(CITIES)}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.20{rng.randint(18, 26)}"


def _money(rng: random.Random) -> str:
    return f"{rng.randint(1, 4999)}.{rng.randint(0, 99):02d}"


class Page:
    """A page being drawn: a cursor moving down, text in a few fonts
    (`fonts(size, face)`), each line drawn recorded in `lines`."""

    def __init__(self, rng: random.Random, width: int, height: int, fonts: Callable[[int, int], ImageFont.FreeTypeFont] = font):
        self.rng, self.width, self.height, self.fonts = rng, width, height, fonts
        self.lines: list[GroundTruthLine] = []
        tint = rng.randint(238, 252)
        self.image = Image.new("RGB", (width, height), (tint, tint, rng.randint(tint - 8, tint)))
        self.draw = ImageDraw.Draw(self.image)
        self.margin = rng.randint(28, 56)
        self.y = self.margin
        self.ink = (rng.randint(0, 40),) * 3

    def room(self, size: int) -> bool:
        return self.y + size * 2 < self.height - self.margin

    def write(self, x: int, y: int, line: str, size: int, face: int = 0, fill: tuple[int, ...] | None = None) -> None:
        """Draw one line at (x, y) and record it (an empty one draws nothing)."""
        face_font = self.fonts(size, face)
        self.draw.text((x, y), line, font=face_font, fill=self.ink if fill is None else fill)
        if line:
            self.lines.append(drawn(self.draw, (x, y), line, face_font))

    def text(self, x: int, line: str, size: int, face: int = 0, advance: float = 1.7) -> None:
        self.write(x, self.y, line, size, face)
        self.y += int(size * advance)

    def fit(self, line: str, size: int, face: int, width: int) -> str:
        """The longest prefix of whole words that fits `width` pixels."""
        face_font = self.fonts(size, face)
        while line and face_font.getlength(line) > width:
            line = line.rsplit(" ", 1)[0] if " " in line else ""
        return line

    def rule(self) -> None:
        self.draw.line((self.margin, self.y, self.width - self.margin, self.y), fill=self.ink, width=1)
        self.y += 10


def _invoice(page: Page) -> None:
    rng, m = page.rng, page.margin
    page.text(m, f"INVOICE {rng.randint(10000, 99999)}", rng.randint(28, 40), face=3)
    page.text(m, _name(rng), 18)
    page.text(m, _address(rng), 16)
    page.text(m, f"Date {_date(rng)}   Due {_date(rng)}   Customer {rng.randint(1000, 9999)}", 16)
    page.rule()
    columns = [m, int(page.width * 0.58), int(page.width * 0.72), int(page.width * 0.84)]
    size = rng.randint(15, 20)
    for x, head in zip(columns, ("Description", "Qty", "Unit", "Amount")):
        page.write(x, page.y, head, size, 3)
    page.y += int(size * 1.8)
    page.rule()
    while page.room(size) and page.y < page.height * 0.8:
        cells = [page.fit(_words(rng, 2, 6), size, 0, columns[1] - m - 12), str(rng.randint(1, 40)), _money(rng), _money(rng)]
        for x, cell in zip(columns, cells):
            page.write(x, page.y, cell, size, 0)
        page.y += int(size * 1.9)
    page.rule()
    for label in ("Subtotal", "Tax 19%", "Total due"):
        if page.room(size):
            page.write(columns[1], page.y, f"{label}  {_money(rng)}", size, 3)
            page.y += int(size * 1.8)
    if page.room(12):
        page.text(m, page.fit(f"Please transfer the total to account {rng.randint(10**9, 10**10 - 1)} within 14 days", 13, 0, page.width - 2 * m), 13)


def _form(page: Page) -> None:
    rng, m = page.rng, page.margin
    page.text(m, _words(rng, 2, 4).upper(), rng.randint(24, 34), face=3)
    page.text(m, page.fit(_words(rng, 6, 12), 14, 1, page.width - 2 * m), 14)
    label_size = rng.randint(14, 18)
    while page.room(label_size * 2):
        label = page.fit(_words(rng, 1, 3), label_size, 0, int(page.width * 0.35))
        value = rng.choice([_name(rng), _address(rng), _date(rng), str(rng.randint(10**5, 10**9)), _words(rng, 1, 4)])
        page.write(m, page.y, label, label_size, 0)
        box_x = int(page.width * 0.4)
        box_h = int(label_size * 1.9)
        page.draw.rectangle((box_x, page.y - 6, page.width - m, page.y - 6 + box_h), outline=(120, 120, 120))
        page.write(box_x + 8, page.y, page.fit(value, label_size, 2, page.width - m - box_x - 16), label_size, 2, fill=(20, 30, 90))
        page.y += box_h + rng.randint(10, 22)


def _article(page: Page) -> None:
    rng, m = page.rng, page.margin
    page.text(m, page.fit(_words(rng, 3, 7), 34, 1, page.width - 2 * m), rng.randint(26, 36), face=1, advance=1.5)
    page.text(m, f"By {_name(rng)}, {rng.choice(CITIES)}, {_date(rng)}", 14, face=1)
    two_columns = page.width > 900
    column_width = (page.width - 3 * m) // 2 if two_columns else page.width - 2 * m
    size = rng.randint(14, 19)
    top = page.y
    for x in ([m, 2 * m + column_width] if two_columns else [m]):
        page.y = top
        while page.room(size):
            if rng.random() < 0.12:
                page.text(x, page.fit(_words(rng, 2, 4), size + 4, 3, column_width), size + 4, face=3)
            line = page.fit(_words(rng, 4, 16), size, 1, column_width)
            if rng.random() < 0.2:  # the last line of a paragraph is short
                line = " ".join(line.split()[: rng.randint(1, 4)])
            page.text(x, line, size, face=1, advance=1.55)


def _receipt(page: Page) -> None:
    rng, m = page.rng, page.margin
    page.text(m, f"{rng.choice(LAST).upper()} MARKT", rng.randint(26, 34), face=3)
    page.text(m, _address(rng), 15, face=2)
    page.text(m, f"{_date(rng)} {rng.randint(7, 21):02d}:{rng.randint(0, 59):02d}  Till {rng.randint(1, 9)}", 15, face=2)
    page.rule()
    size = rng.randint(15, 19)
    while page.room(size * 3):
        item = page.fit(_words(rng, 1, 3).upper(), size, 2, int(page.width * 0.6))
        page.write(m, page.y, item, size, 2)
        page.write(int(page.width * 0.72), page.y, _money(rng), size, 2)
        page.y += int(size * 1.7)
    page.rule()
    page.text(m, f"TOTAL EUR {_money(rng)}", size + 6, face=2)


DRAW = {"invoice": _invoice, "form": _form, "article": _article, "receipt": _receipt}


def scanned(image: Image.Image, rng: random.Random) -> bytes:
    """Slight blur, sensor noise and JPEG compression, as a scanner gives."""
    image = image.filter(ImageFilter.GaussianBlur(radius=rng.choice([0.0, 0.4, 0.6])))
    pixels = np.asarray(image, dtype=np.int16)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 3.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(80, 92))
    return buffer.getvalue()


def pages(count: int = PAGE_COUNT, seed: int = 2026) -> list[DocumentPage]:
    """`count` pages cycling through the page kinds, 640-1300 px a side."""
    rng = random.Random(seed)
    result = []
    for index in range(count):
        kind = PAGE_KINDS[index % len(PAGE_KINDS)]
        width = rng.randint(640, 1300) if kind != "receipt" else rng.randint(640, 760)
        height = rng.randint(max(640, int(width * 0.9)), 1300)
        page = Page(rng, width, height)
        DRAW[kind](page)
        result.append(DocumentPage(f"{kind}-{index:02d}", scanned(page.image, rng), (width, height), page.lines))
    return result
