"""OCR accuracy against ground truth lines: character error rate and exact
line match.

A line, on either side, is a pair (text, box): box four corners (x, y) in the
picture's pixels. Ground truth lines are testsets.ground_truth.GroundTruthLine
(they unpack as that pair); predicted lines are what an OCR system returns.

The rules, in order:
1. Texts are compared normalised: Unicode NFKC (so "…" is "...", and the
   fullwidth "！：，" are "!:,"), every run of whitespace one space, none at
   either end and none beside a CJK character (East Asian Width wide or
   fullwidth: Chinese sets spaces around Latin words or not, as it likes).
   Predicted lines with no text left are dropped.
2. Matching by geometry. A box is the convex hull of its four corners. A
   predicted line belongs to the ground-truth line it shares the most area
   with, if that shared area is at least half (MIN_OVERLAP) of the smaller
   of the two boxes. A detector's box is looser than a tight box around the
   ink; the smaller box is the fair yardstick either way round. A predicted
   line that belongs to none is an insertion.
3. The predicted lines of one ground-truth line are put in reading order:
   ordered by their centres along the ground-truth line (from its first
   corner toward its second), and joined with one space between pieces
   (then normalised again, so none stays beside a CJK character). A detector
   splits a line at wide gaps, which are word gaps.
4. Each ground-truth line costs the Levenshtein distance (insertions,
   deletions, substitutions of one character, each 1) between its text and
   the joined prediction; with no prediction, all its characters (deleted).
   Each insertion (rule 2) costs all its characters.
5. Character error rate = total cost / ground-truth characters (over 1 when
   a system invents more than the page holds). Exact line match = ground-truth
   lines whose joined prediction equals their text / ground-truth lines.

A page's figures add up over pages (`PageScore.__add__`, `total`): the
rates of a set are those of the summed counts, not a mean of page rates."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import numpy as np
import shapely
from rapidfuzz.distance import Levenshtein

MIN_OVERLAP = 0.5
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PageScore:
    truth_lines: int = 0
    truth_chars: int = 0
    predicted_lines: int = 0  # with text (rule 1)
    edits: int = 0  # rule 4: all substitutions, deletions, insertions
    exact_lines: int = 0  # ground-truth lines read exactly
    missed_lines: int = 0  # ground-truth lines no prediction belongs to
    extra_lines: int = 0  # predictions that belong to no ground-truth line

    @property
    def cer(self) -> float:
        """Over a page without text: 0 when nothing was read there, else 1."""
        return self.edits / self.truth_chars if self.truth_chars else float(self.edits > 0)

    @property
    def exact_match(self) -> float:
        return self.exact_lines / self.truth_lines if self.truth_lines else 1.0

    def __add__(self, other: PageScore) -> PageScore:
        return PageScore(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def summary(self) -> str:
        return f"CER {self.cer:.2%}, exact lines {self.exact_match:.1%} ({self.exact_lines}/{self.truth_lines}), missed {self.missed_lines}, extra {self.extra_lines}"


def normalised(text: str) -> str:
    """Rule 1."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    return "".join(char for index, char in enumerate(text) if char != " " or not (_wide(text[index - 1]) or _wide(text[index + 1])))


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _polygons(boxes: list[np.ndarray]) -> np.ndarray:
    return shapely.convex_hull(shapely.multipoints(np.stack(boxes)))


def _owners(truth_boxes: list, predicted_boxes: list) -> np.ndarray:
    """Rule 2: for each predicted box, the index of its ground-truth line, or -1."""
    if not truth_boxes or not predicted_boxes:
        return np.full(len(predicted_boxes), -1)
    truth, predicted = _polygons(truth_boxes), _polygons(predicted_boxes)
    shared = shapely.area(shapely.intersection(predicted[:, None], truth[None, :]))
    smaller = np.minimum(shapely.area(predicted)[:, None], shapely.area(truth)[None, :])
    best = shared.argmax(axis=1)
    rows = np.arange(len(predicted_boxes))
    enough = shared[rows, best] >= MIN_OVERLAP * smaller[rows, best]
    return np.where(enough & (shared[rows, best] > 0), best, -1)


def score_page(truth_lines: Iterable[tuple[str, Sequence]], predicted_lines: Iterable[tuple[str, Sequence]]) -> PageScore:
    """The figures of one page (the rules above)."""
    truth = [(normalised(text), np.asarray(box, dtype=np.float64).reshape(4, 2)) for text, box in truth_lines]
    predicted = [(normalised(text), np.asarray(box, dtype=np.float64).reshape(4, 2)) for text, box in predicted_lines]
    predicted = [(text, box) for text, box in predicted if text]
    owners = _owners([box for _, box in truth], [box for _, box in predicted])
    edits = sum(len(text) for (text, _), owner in zip(predicted, owners) if owner < 0)
    exact = missed = 0
    for index, (text, box) in enumerate(truth):
        direction = box[1] - box[0]
        pieces = sorted((float(np.dot(piece_box.mean(axis=0), direction)), piece) for (piece, piece_box), owner in zip(predicted, owners) if owner == index)
        read = normalised(" ".join(piece for _, piece in pieces))
        edits += Levenshtein.distance(text, read)
        exact += read == text
        missed += not pieces
    return PageScore(
        truth_lines=len(truth),
        truth_chars=sum(len(text) for text, _ in truth),
        predicted_lines=len(predicted),
        edits=edits,
        exact_lines=exact,
        missed_lines=missed,
        extra_lines=int((owners < 0).sum()),
    )


def total(scores: Iterable[PageScore]) -> PageScore:
    """The figures of a set of pages: the counts summed."""
    return sum(scores, PageScore())
