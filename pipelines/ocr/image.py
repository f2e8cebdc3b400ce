"""Encoded picture bytes -> the array RapidOCR 1.4.4 works on.

RapidOCR's `LoadImage` for bytes is `np.array(PIL.Image.open(BytesIO(data)))`
(bilevel "1" first converted to "L"), then by array shape:

- 2-D (grey, palette indices, 16-bit grey) -> cv2 GRAY2BGR (dtype kept);
- 2 channels (grey + alpha, palette + alpha) -> grey AND-masked where
  alpha != 0, plus (255 - alpha) with saturation, as BGR;
- 3 channels (RGB) -> BGR;
- 4 channels (RGBA, but also CMYK) -> BGR AND-masked where alpha != 0; if the
  masked picture is all black, (255 - alpha) is added (the transparent
  background turns white), otherwise the masked picture is inverted
  (255 - value), so dark text on a transparent background comes out white on
  black when the text pixels are not pure black.

EXIF orientation is not applied. RapidOCR then works in BGR: crops,
classifier and recogniser all see BGR pixels.

`load_image(data)` is what the pipeline uses: bit-exact with the rules above
for bilevel, grey, grey+alpha, RGB and RGBA pictures (every JPEG, BMP and
WebP, and PNGs other than palette and 16-bit), with three documented
deviations where RapidOCR feeds its networks meaningless values (see
`pipelines.image.decode.RAPID_DEVIATIONS`): palette PNGs use the palette
colours, not the indices; 16-bit grey PNGs use the high byte (RapidOCR
passes 0..65535 to a normalisation made for 0..255, as uint16 arrays);
CMYK JPEGs use Pillow's RGB conversion. `load_image(data, exact=True)`
follows RapidOCR in those cases too (the result may then be uint16), for
parity checks.

Both refuse, with a `ValueError` whose message says why: empty input,
anything but JPEG / PNG / BMP / WebP, truncated or corrupt files, and
pictures over `MAX_SIDE` (8192) pixels per side or `MAX_PIXELS` (40
megapixels), checked from the header before any pixel is decoded.
RapidOCR itself opens every format Pillow knows and has no size limit.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.image.decode import MAX_PIXELS, MAX_SIDE, ImageDecodeError, decode_image, load_pixels, open_image

__all__ = ["MAX_PIXELS", "MAX_SIDE", "ImageDecodeError", "load_image", "convert_like_rapidocr"]


def convert_like_rapidocr(pixels: np.ndarray) -> np.ndarray:
    """LoadImage.convert_img for an array that came from a PIL picture:
    2-D or HxWxC with C in 1..4 -> HxWx3 BGR (dtype kept for 2-D/1-channel
    and 3-channel input). ValueError for other shapes or dtypes OpenCV refuses."""
    try:
        if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
            return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
        if pixels.ndim != 3:
            raise ImageDecodeError(f"unsupported picture array of {pixels.ndim} dimensions")
        channels = pixels.shape[2]
        if channels == 2:
            gray, alpha = pixels[..., 0], pixels[..., 1]
            bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            masked = cv2.bitwise_and(bgr, bgr, mask=alpha)
            return cv2.add(masked, cv2.cvtColor(cv2.bitwise_not(alpha), cv2.COLOR_GRAY2BGR))
        if channels == 3:
            return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        if channels == 4:
            r, g, b, a = cv2.split(pixels)
            bgr = cv2.merge((b, g, r))
            masked = cv2.bitwise_and(bgr, bgr, mask=a)
            if np.mean(masked) <= 0.0:
                return cv2.add(masked, cv2.cvtColor(cv2.bitwise_not(a), cv2.COLOR_GRAY2BGR))
            return cv2.bitwise_not(masked)
        raise ImageDecodeError(f"unsupported picture with {channels} channels")
    except cv2.error as error:
        raise ImageDecodeError(
            f"unsupported picture array ({pixels.dtype}, shape {list(pixels.shape)}): {error.msg or error}"
        ) from None


def _load_exact(data) -> np.ndarray:
    image = open_image(data)  # format and size checks from the header
    with image:
        load_pixels(image)
        pixels = np.array(image.convert("L") if image.mode == "1" else image)
    return np.ascontiguousarray(convert_like_rapidocr(pixels))


def load_image(data, exact: bool = False) -> np.ndarray:
    """Encoded bytes (bytes, bytearray, 1-D uint8 array or one-element BYTES
    tensor) -> C-contiguous HxWx3 BGR as RapidOCR's LoadImage makes it
    (uint8; with `exact=True` RapidOCR's own dtype, uint16 for 16-bit grey
    PNG). Raises `ImageDecodeError` (a ValueError) for refused input."""
    if exact:
        return _load_exact(data)
    return decode_image(data, mode="rapid")
