"""A deterministic OCR test set: rendered text with known ground truth.

Several DejaVu fonts, sizes, colours and backgrounds; multi-line pages, lines
turned 180 degrees, slightly skewed pages, long lines (width/height > 8),
tiny pictures under 30 px, a 30 px strip (letterboxed), a vertical line (a
tall crop the pipeline turns 90 degrees), a page with one line upside down
among upright ones, coloured text on a gradient, one picture over 2000 px,
and scikit-image's text photograph (no ground truth). `samples()` is
deterministic: the same Pillow, fonts and codecs give the same bytes.

`format_samples()`: the picture kinds RapidOCR's loader treats specially
(bilevel, grey+alpha, coloured text on transparent RGBA, palette, 16-bit
grey, CMYK JPEG), with ground truth.

Ground truth: `OcrSample.lines` the texts, top to bottom; `OcrSample.truth`
the same lines with their boxes in the picture (testsets/ground_truth.py),
turned with the picture where it was turned."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from testsets.ground_truth import GroundTruthLine, drawn, rotated, shifted

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
WORDS = (
    "triton serves text detection and recognition models with dynamic batching on two cores "
    "ensemble pipelines answer over http and grpc every request gets its own rows back quickly"
).split()


@dataclass
class OcrSample:
    name: str
    data: bytes
    lines: list[str]  # ground truth, top to bottom (empty when unknown)
    truth: list[GroundTruthLine] = field(default_factory=list)  # the same lines with their boxes


def font(size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / FONTS[index % len(FONTS)]), size)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def rendered(lines, size=28, font_index=0, fg=(20, 20, 20), bg=(255, 255, 255), margin=24, spacing=1.8, mode="RGB") -> tuple[Image.Image, list[GroundTruthLine]]:
    """Lines one below the other, and where each one was drawn."""
    face = font(size, font_index)
    widths = [face.getbbox(line)[2] for line in lines]
    width = max(widths) + 2 * margin
    height = int(len(lines) * size * spacing) + 2 * margin
    image = Image.new(mode, (width, height), bg)
    draw = ImageDraw.Draw(image)
    truth = []
    for i, line in enumerate(lines):
        xy = (margin, margin + int(i * size * spacing))
        draw.text(xy, line, font=face, fill=fg)
        truth.append(drawn(draw, xy, line, face))
    return image, truth


def render_lines(lines, *args, **kwargs) -> Image.Image:
    return rendered(lines, *args, **kwargs)[0]


def _sample(name: str, image: Image.Image, truth: list[GroundTruthLine], fmt: str = "PNG") -> OcrSample:
    return OcrSample(name, encode(image, fmt), [line.text for line in truth], truth)


def _turned(picture: tuple[Image.Image, list[GroundTruthLine]], angle: float, **rotate) -> tuple[Image.Image, list[GroundTruthLine]]:
    image, truth = picture
    turned = image.rotate(angle, **rotate)
    return turned, rotated(truth, angle, image.size, turned.size)


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def samples(include_photo: bool = True) -> list[OcrSample]:
    rng = random.Random(7)
    out: list[OcrSample] = []
    colours = [((20, 20, 20), (255, 255, 255)), ((0, 0, 160), (250, 240, 200)), ((255, 255, 255), (30, 60, 90)), ((120, 0, 0), (220, 235, 220))]
    for i in range(8):
        lines = [_sentence(rng, rng.randint(2, 5)) for _ in range(rng.randint(1, 4))]
        fg, bg = colours[i % len(colours)]
        image, truth = rendered(lines, size=rng.choice([20, 26, 32, 40]), font_index=i, fg=fg, bg=bg)
        out.append(_sample(f"page_{i}", image, truth, "PNG" if i % 2 else "JPEG"))
    for i in range(3):  # pages turned 180 degrees: the classifier must turn the crops back
        lines = [_sentence(rng, 3) for _ in range(2)]
        out.append(_sample(f"upside_down_{i}", *_turned(rendered(lines, size=30, font_index=i), 180)))
    for i, angle in enumerate([3, -4]):  # slightly skewed
        lines = [_sentence(rng, 3) for _ in range(2)]
        picture = rendered(lines, size=30, font_index=i, margin=40)
        out.append(_sample(f"skewed_{i}", *_turned(picture, angle, expand=True, fillcolor=(255, 255, 255))))
    for i in range(2):  # long single lines, width/height > 8
        line = _sentence(rng, 12)
        out.append(_sample(f"long_line_{i}", *rendered([line], size=24, font_index=i, margin=6)))
    for i, text in enumerate(["ok", "42"]):  # tiny pictures under 30 px high
        out.append(_sample(f"tiny_{i}", *rendered([text], size=14, margin=4)))
    big_lines = [_sentence(rng, 6) for _ in range(12)]  # over 2000 px
    out.append(_sample("large", *rendered(big_lines, size=90, margin=120), "JPEG"))
    gray, truth = rendered(["grayscale picture text"], size=30)
    out.append(_sample("grayscale", gray.convert("L"), truth))
    out.append(_sample("rgba", *rendered(["transparent background"], size=30, fg=(0, 0, 0, 255), bg=(0, 0, 0, 0), mode="RGBA")))
    out.append(OcrSample("blank", encode(Image.new("RGB", (320, 200), (255, 255, 255))), []))
    out += _extra_samples(rng)
    if include_photo:
        try:
            from skimage import data as skdata  # optional: the photo sample is skipped without it

            out.append(OcrSample("skimage_text", encode(Image.fromarray(skdata.text())), []))
        except ImportError:
            pass
    return out


def sixteen_bit_png() -> bytes:
    page = np.asarray(render_lines(["sixteen bit"], size=30).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(page))


def _stack(parts: list[tuple[Image.Image, list[GroundTruthLine]]], bg=(255, 255, 255), margin: int = 20, gap: int = 16) -> tuple[Image.Image, list[GroundTruthLine]]:
    """Paste pictures one below the other on a page."""
    width = max(part.width for part, _ in parts) + 2 * margin
    height = sum(part.height for part, _ in parts) + gap * (len(parts) - 1) + 2 * margin
    page = Image.new("RGB", (width, height), bg)
    truth = []
    y = margin
    for part, part_truth in parts:
        page.paste(part, (margin, y))
        truth += shifted(part_truth, margin, y)
        y += part.height + gap
    return page, truth


def _extra_samples(rng: random.Random) -> list[OcrSample]:
    out = []
    # one line upside down between upright lines: the classifier turns that crop only
    lines = [_sentence(rng, 3) for _ in range(3)]
    parts = [rendered([line], size=28, font_index=i, margin=4) for i, line in enumerate(lines)]
    parts[1] = _turned(parts[1], 180)
    out.append(_sample("mixed_orientation", *_stack(parts)))
    # under 30 px high (the short side grows to 30, then to multiples of 32)
    out.append(_sample("tiny_strip", *rendered(["triton"], size=12, margin=3, spacing=1.2)))
    # exactly 30 px high and wide: letterboxed by both of RapidOCR's rules
    strip = Image.new("RGB", (330, 30), (255, 255, 255))
    strip_draw = ImageDraw.Draw(strip)
    strip_draw.text((6, 5), "status ok answer", font=font(17, 1), fill=(0, 0, 0))
    out.append(_sample("strip_30px", strip, [drawn(strip_draw, (6, 5), "status ok answer", font(17, 1))]))
    # a vertical line: its crop is tall (h/w >= 1.5) and turned 90 degrees
    line = _sentence(rng, 3)
    out.append(_sample("vertical", *_turned(rendered([line], size=30, font_index=3, margin=10), -90, expand=True)))
    # coloured lines in several fonts on a horizontal gradient, JPEG
    lines = [_sentence(rng, 4) for _ in range(3)]
    ramp = np.linspace(150, 255, 720, dtype=np.float32)
    background = np.stack([ramp[None, :].repeat(220, 0), np.full((220, 720), 235, np.float32), ramp[::-1][None, :].repeat(220, 0)], axis=2)
    page = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(page)
    truth = []
    for i, (text, ink) in enumerate(zip(lines, [(10, 10, 90), (110, 0, 60), (0, 80, 0)])):
        draw.text((24, 24 + 62 * i), text, font=font(30 - 3 * i, i + 1), fill=ink)
        truth.append(drawn(draw, (24, 24 + 62 * i), text, font(30 - 3 * i, i + 1)))
    out.append(_sample("gradient_colours", page, truth, "JPEG"))
    return out


def format_samples() -> list[OcrSample]:
    """One short line in each picture kind LoadImage handles specially."""
    base, truth = rendered(["special formats"], size=30, fg=(180, 20, 20), bg=(240, 240, 250))
    rgba = render_lines(["special formats"], size=30, fg=(180, 20, 20, 255), bg=(0, 0, 0, 0), mode="RGBA")
    black_rgba = render_lines(["special formats"], size=30, fg=(0, 0, 0, 255), bg=(0, 0, 0, 0), mode="RGBA")
    sixteen = np.asarray(base.convert("L"), dtype=np.uint16) * 257
    return [  # the same line at the same place in each
        _sample("bilevel", base.convert("L").point(lambda v: 255 if v > 160 else 0).convert("1"), truth),
        _sample("grey_alpha", base.convert("LA"), truth),
        _sample("rgba_black_text", black_rgba, truth),
        _sample("rgba_coloured_text", rgba, truth),
        _sample("palette", base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), truth),
        _sample("grey_16_bit", Image.fromarray(sixteen), truth),
        _sample("cmyk_jpeg", base.convert("CMYK"), truth, "JPEG"),
    ]
