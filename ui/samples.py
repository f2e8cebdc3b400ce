"""The pictures the page offers to try: document pages for OCR, turned pages
and photos for the classifiers, a photo collection for CLIP search. They
come from testsets/ (drawn or shipped by scikit-image, the same bytes every
time) and are written once per UI process into its own folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testsets.documents import pages
from testsets.images import document_samples, photo_samples

DOCUMENT_PAGES = 4  # one of each kind: invoice, form, article, receipt
TURNED_PAGES = ("page-sans-0.jpg", "page-serif-90.png", "page-sans-180.jpg", "page-colour-270.webp")
# photo_samples() also holds edge cases for the decoder tests (a 1x1, noise,
# a 15:1 strip...): the collection keeps the pictures a person would search
PHOTOS = (
    "skimage-astronaut.jpg",
    "skimage-coffee.jpg",
    "skimage-chelsea.jpg",
    "skimage-rocket.jpg",
    "skimage-camera-gray.png",
    "skimage-logo-rgba.png",
    "shapes.jpg",
    "gradient.png",
    "page-serif.png",
    "page-sans-90.webp",
)


@dataclass(frozen=True)
class Samples:
    documents: list[Path]
    turned_pages: list[Path]
    photos: list[Path]


def write_samples(folder: Path) -> Samples:
    """Write the sample pictures under `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    documents = [write(f"{page.name}.jpg", page.data) for page in pages(DOCUMENT_PAGES)]
    turned = {sample.name: sample.data for sample in document_samples() if sample.name in TURNED_PAGES}
    photos = {sample.name: sample.data for sample in photo_samples() if sample.name in PHOTOS}
    return Samples(
        documents=documents,
        turned_pages=[write(name, turned[name]) for name in TURNED_PAGES if name in turned],
        # scikit-image's photos are there when it is installed (requirements/dev.txt)
        photos=[write(name, photos[name]) for name in PHOTOS if name in photos],
    )
