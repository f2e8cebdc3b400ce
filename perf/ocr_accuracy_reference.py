"""Reference accuracy of RapidOCR itself on the OCR test pages with ground
truth, no server: `python -m perf.ocr_accuracy_reference [--pages N]`.

Systems: rapidocr 3.10 (`RapidOCR()`: PP-OCRv6 small det and rec, onnxruntime,
its defaults) and rapidocr-onnxruntime 1.4.4 (PP-OCRv4). Sets: the 16 document
pages (testsets/documents.py) and the multilingual pages
(testsets/multilingual.py), the latter also per language. Figures:
testsets/accuracy.py (character error rate, exact line match)."""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from testsets import documents, multilingual
from testsets.accuracy import PageScore, score_page, total

Reader = Callable[[bytes], list[tuple[str, np.ndarray]]]


def rapidocr_v3() -> Reader:
    from rapidocr import RapidOCR  # lazy: each system is imported only when measured

    engine = RapidOCR(params={"Global.log_level": "warning"})

    def read(data: bytes) -> list[tuple[str, np.ndarray]]:
        result = engine(data)
        return [] if result.boxes is None else list(zip(result.txts, result.boxes))

    return read


def rapidocr_onnxruntime() -> Reader:
    from rapidocr_onnxruntime import RapidOCR  # lazy: as above

    engine = RapidOCR()

    def read(data: bytes) -> list[tuple[str, np.ndarray]]:
        result, _ = engine(data)
        return [(text, np.asarray(box, dtype=np.float32)) for box, text, _ in result or []]

    return read


SYSTEMS = {"rapidocr 3.10 (PP-OCRv6 small)": rapidocr_v3, "rapidocr-onnxruntime 1.4.4 (PP-OCRv4)": rapidocr_onnxruntime}


def _row(system: str, group: str, score: PageScore, seconds: float | None = None) -> str:
    timing = f"{seconds:.0f}" if seconds is not None else ""
    return f"| {system} | {group} | {score.cer:.2%} | {score.exact_match:.1%} ({score.exact_lines}/{score.truth_lines}) | {score.missed_lines} | {score.extra_lines} | {timing} |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=None, help="only the first N pages of each set (a smoke run)")
    args = parser.parse_args(argv)
    sets = {"documents": documents.pages()[: args.pages], "multilingual": multilingual.pages()[: args.pages]}
    print("| system | pages | CER | exact lines | missed lines | extra lines | seconds |\n|---|---|---|---|---|---|---|", flush=True)
    for system, make in SYSTEMS.items():
        read = make()
        for set_name, pages in sets.items():
            start = time.perf_counter()
            scores = {page.name: score_page(page.lines, read(page.data)) for page in pages}
            print(_row(system, f"{set_name} ({len(pages)})", total(scores.values()), time.perf_counter() - start), flush=True)
            if set_name == "multilingual":
                for language in multilingual.LANGUAGES:
                    ours = [score for name, score in scores.items() if name.startswith(language.code + "-")]
                    print(_row(system, f"  {language.code} ({len(ours)})", total(ours)), flush=True)


if __name__ == "__main__":
    main()
