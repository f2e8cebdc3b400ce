"""Ground truth of a drawn text line: its text and where it lies.

`GroundTruthLine.box` is a float32 [4, 2] quadrilateral in the pixel
coordinates of the final picture (x right, y down; a pixel covers [x, x+1)),
its corners in the text's own order: top-left, top-right, bottom-right,
bottom-left of the text as read. For upright text that is clockwise from the
picture's top-left; after a turn the corners turn with the text (the first
corner of a line drawn upside down is at the picture's bottom right), so
box[1] - box[0] always points along the reading direction.

The box is the extent of the ink Pillow draws for the string (every pixel
its glyph mask touches): tight around the glyphs on all four sides, not
around the line height or the advance widths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw, ImageFont


@dataclass(frozen=True, eq=False)
class GroundTruthLine:
    text: str
    box: np.ndarray  # float32 [4, 2]: top-left, top-right, bottom-right, bottom-left of the text

    def __post_init__(self) -> None:
        box = np.array(self.box, dtype=np.float32).reshape(4, 2)
        box.flags.writeable = False
        object.__setattr__(self, "box", box)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroundTruthLine):
            return NotImplemented
        return self.text == other.text and np.array_equal(self.box, other.box)

    def __iter__(self):
        """Unpacks as (text, box), the pair testsets.accuracy scores."""
        return iter((self.text, self.box))


def rectangle(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32)


def drawn(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, face: ImageFont.FreeTypeFont) -> GroundTruthLine:
    """The line `draw.text(xy, text, font=face)` draws (default anchor,
    integer xy): the mask Pillow pastes there, cut to its ink."""
    mask, (dx, dy) = face.getmask2(text, draw.fontmode)
    left, top, right, bottom = mask.getbbox()
    x, y = xy[0] + dx, xy[1] + dy
    return GroundTruthLine(text, rectangle(x + left, y + top, x + right, y + bottom))


def shifted(lines: list[GroundTruthLine], dx: float, dy: float) -> list[GroundTruthLine]:
    """The lines of a picture pasted at (dx, dy)."""
    return [GroundTruthLine(line.text, line.box + np.float32([dx, dy])) for line in lines]


def rotated(lines: list[GroundTruthLine], angle: float, size: tuple[int, int], new_size: tuple[int, int]) -> list[GroundTruthLine]:
    """The lines of a picture of `size` after `Image.rotate(angle)` made it `new_size`.

    Pillow turns counter-clockwise about the centre and, with expand, centres
    the turned picture on the larger canvas: centre goes to centre."""
    theta = math.radians(angle)
    turn = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    centre, new_centre = np.array(size) / 2, np.array(new_size) / 2
    return [GroundTruthLine(line.text, (line.box - centre) @ turn.T + new_centre) for line in lines]

