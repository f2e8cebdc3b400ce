"""Pictures the page shows: OCR quadrilaterals over the page, and the cosine
similarity heat map of the text tab."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# distinct colours, cycled over the lines so neighbours differ
PALETTE = ((220, 38, 38), (37, 99, 235), (22, 163, 74), (217, 119, 6), (147, 51, 234), (8, 145, 178))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:
        return ImageFont.load_default(size)


def ocr_overlay(picture: bytes, lines: Sequence[dict]) -> Image.Image:
    """The picture with each line's quadrilateral drawn as the server gave
    it (rotated boxes stay rotated) and numbered from 1, in table order."""
    with Image.open(io.BytesIO(picture)) as opened:
        image = opened.convert("RGB")
    draw = ImageDraw.Draw(image)
    short_side = min(image.size)
    width = max(2, round(short_side / 400))
    font = _font(max(11, short_side // 70))
    for number, line in enumerate(lines, 1):
        colour = PALETTE[(number - 1) % len(PALETTE)]
        corners = [tuple(point) for point in np.asarray(line["box"], dtype=np.float64).reshape(4, 2)]
        draw.line(corners + corners[:1], fill=colour, width=width, joint="curve")
        # the number on a filled tag at the first corner (the top left of an upright line)
        x, y = corners[0]
        left, top, right, bottom = draw.textbbox((0, 0), str(number), font=font)
        tag = (x, y - (bottom - top) - 2 * width, x + (right - left) + 2 * width, y)
        draw.rectangle(tag, fill=colour)
        draw.text((tag[0] + width - left, tag[1] + width - top), str(number), fill=(255, 255, 255), font=font)
    return image


def similarity_figure(count: int, similarity: np.ndarray):
    """A matplotlib figure: the cosine similarity matrix of `count`
    sentences, numbered as written, each cell's value written out."""
    # lazily: only the text tab draws with matplotlib, on the Agg backend chosen before its figures load
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # after use("Agg")

    size = 2.5 + 0.5 * count
    figure = Figure(figsize=(size + 1.2, size))
    axes = figure.add_subplot()
    shown = axes.imshow(similarity, vmin=-1.0, vmax=1.0, cmap="RdYlGn")
    numbers = [str(i) for i in range(1, count + 1)]
    axes.set_xticks(range(count), numbers)
    axes.set_yticks(range(count), numbers)
    axes.set_xlabel("sentence")
    axes.set_ylabel("sentence")
    for row in range(count):
        for column in range(count):
            axes.text(column, row, f"{similarity[row, column]:.2f}", ha="center", va="center", fontsize=8)
    axes.set_title("cosine similarity (text_embedding)")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure
