"""What each tab does, as plain functions over the client library (no
Gradio here): the page (ui/page.py) turns their results into pictures,
tables and plots. Every request is a client's; a failure comes back as a
UserError with the message the page shows."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from clients import clip_search, triton_metrics
from clients.ocr_client import OcrClient
from clients.orientation_client import NUM_LABELS, OrientationClient
from clients.stable_diffusion_client import StableDiffusionClient
from clients.text_embedding_client import TextEmbeddingClient
from clients.vit_client import VitClient
from runtime.paths import MODEL_REPOSITORY
from ui.backend import METRICS, Backend, Clients, UserError, call, failure

OCR_MODELS = ("ocr", "ocr_bls")
VIT_MODELS = ("vit", "vit_python")
MAX_PICTURE_BYTES = 20 * 1024 * 1024  # also the page's upload limit (ui/page.py)
MAX_SENTENCES = 16
MAX_COLLECTION = 64
TEXT2IDS_VOCAB = MODEL_REPOSITORY / "text2ids" / "1" / "vocab.txt"


def read_picture(path: str | Path | None, what: str = "picture") -> bytes:
    """The bytes of an uploaded file, refused here when missing or over the limit."""
    if path is None:
        raise UserError(f"Choose a {what} first: upload one or pick a sample.")
    size = Path(path).stat().st_size
    if size > MAX_PICTURE_BYTES:
        raise UserError(f"The {what} is {size / 2**20:.1f} MB; the page takes pictures up to {MAX_PICTURE_BYTES // 2**20} MB.")
    return Path(path).read_bytes()


# -- OCR ---------------------------------------------------------------------


@dataclass
class OcrResult:
    lines: list[dict]
    latency_ms: float
    model: str


def ocr(clients: Clients, picture: bytes, model: str) -> OcrResult:
    """The lines of one picture from `ocr` or `ocr_bls` (OcrClient.recognize, as the CLI)."""
    if model not in OCR_MODELS:
        raise UserError(f"model must be one of {', '.join(OCR_MODELS)}, not {model!r}")
    client = clients.get(f"ocr:{model}", lambda b: OcrClient(b.url, b.protocol, model, tls=b.tls))
    started = time.perf_counter()
    lines = call(model, clients.backend, lambda: client.recognize(picture))
    return OcrResult(lines, (time.perf_counter() - started) * 1000, model)


def ocr_model_set(clients: Clients) -> str:
    """Which OCR model set the server runs ("PP-OCRv6"), as the OCR client
    reads it from ocr_rec's open metadata."""
    client = clients.get("ocr:ocr", lambda b: OcrClient(b.url, b.protocol, "ocr", tls=b.tls))
    return call("ocr_rec", clients.backend, client.model_set)


# -- Classify -------------------------------------------------------------------


@dataclass
class Classified:
    orientation: list[tuple[str, float]]
    vit_nearest: list[tuple[str, float]]
    vit_shape: tuple[int, ...]


class VitReferences:
    """The CLS features of the sample photos, embedded once per model: a
    picture's vit "labels" are the names of its nearest samples (the served
    ViT has no classification head: it gives last_hidden_state)."""

    def __init__(self, pictures: Sequence[Path]):
        self.pictures = list(pictures)
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def vectors(self, clients: Clients, model: str) -> np.ndarray:
        with self._lock:
            if model not in self._vectors:
                client = clients.get(f"vit:{model}", lambda b: VitClient(b.url, b.protocol, model, tls=b.tls))
                rows = []
                for _, features, problem in call(model, clients.backend, lambda: list(client.features_each(self.pictures))):
                    if problem is not None:
                        raise UserError(f"`{model}` refused a sample photo: {problem}")
                    rows.append(cls_vector(features))
                self._vectors[model] = np.stack(rows)
            return self._vectors[model]


def cls_vector(features: np.ndarray) -> np.ndarray:
    """The L2-normalised CLS token (row 0) of last_hidden_state."""
    cls = features[0].astype(np.float64)
    return cls / max(np.linalg.norm(cls), 1e-12)


def classify(clients: Clients, picture: bytes, top_k: int, vit_model: str, references: VitReferences) -> Classified:
    """Orientation's top-k labels (OrientationClient.classify) and the vit
    model's top-k nearest sample photos by CLS cosine (VitClient.features)."""
    if not 1 <= top_k <= NUM_LABELS:
        raise UserError(f"top-k must be between 1 and {NUM_LABELS}")
    if vit_model not in VIT_MODELS:
        raise UserError(f"vit model must be one of {', '.join(VIT_MODELS)}")
    orientation = clients.get("orientation", lambda b: OrientationClient(b.url, b.protocol, tls=b.tls))
    labels = call("orientation", clients.backend, lambda: orientation.classify(picture, top_k))
    vit = clients.get(f"vit:{vit_model}", lambda b: VitClient(b.url, b.protocol, vit_model, tls=b.tls))
    features = call(vit_model, clients.backend, lambda: vit.features(picture))
    scores = references.vectors(clients, vit_model) @ cls_vector(features)
    order = np.argsort(-scores, kind="stable")[:top_k]
    nearest = [(references.pictures[i].name, float(scores[i])) for i in order]
    return Classified(labels, nearest, tuple(features.shape))


# -- Text -------------------------------------------------------------------------


@dataclass
class TextResult:
    sentences: list[str]
    embeddings: np.ndarray  # float32 [N, D], L2-normalised
    similarity: np.ndarray  # [N, N] cosine
    tokens: list[list[tuple[str, int]]]  # per sentence: (vocabulary entry, id) from text2ids


def split_sentences(text: str) -> list[str]:
    sentences = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not sentences:
        raise UserError("Write one or more sentences, one per line.")
    if len(sentences) > MAX_SENTENCES:
        raise UserError(f"{len(sentences)} sentences: the page compares up to {MAX_SENTENCES}.")
    return sentences


class Vocabulary:
    """text2ids' vocab.txt, id -> entry (read from the exported repository,
    once; without it the ids are shown alone)."""

    def __init__(self, path: Path = TEXT2IDS_VOCAB):
        self.path = path
        self._entries: list[str] | None = None

    def entry(self, token_id: int) -> str:
        if self._entries is None:
            self._entries = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        return self._entries[token_id] if 0 <= token_id < len(self._entries) else "?"


def text_similarity(clients: Clients, text: str, vocabulary: Vocabulary) -> TextResult:
    """text_embedding vectors of the sentences (TextEmbeddingClient.embed),
    their cosine similarities, and text2ids' ids (TextEmbeddingClient.ids)."""
    sentences = split_sentences(text)
    client = clients.get("text", lambda b: TextEmbeddingClient(b.url, b.protocol, tls=b.tls))
    embeddings = call("text_embedding", clients.backend, lambda: client.embed(sentences))
    similarity = embeddings.astype(np.float64) @ embeddings.astype(np.float64).T
    tokens = []
    for sentence in sentences:
        ids = call("text2ids", clients.backend, lambda: client.ids(sentence))
        tokens.append([(vocabulary.entry(i), i) for i in ids])
    return TextResult(sentences, embeddings, similarity, tokens)


# -- CLIP search ---------------------------------------------------------------------


@dataclass
class Hit:
    name: str
    path: str
    score: float


@dataclass
class SearchResult:
    hits: list[Hit]
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it is not in the collection


class ClipIndex:
    """Picture embeddings by content (sha256), so a collection is embedded
    once however often it is searched; bounded, least recently used first out."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, clients: Clients, pictures: list[bytes]) -> tuple[list[np.ndarray | None], dict[int, str]]:
        """(vector or None per picture, {index: error message})."""
        keys = [hashlib.sha256(data).hexdigest() for data in pictures]
        with self._lock:
            missing = [i for i, key in enumerate(keys) if key not in self._vectors]
        module, client = clients.raw()
        embedded = call(clip_search.IMAGE_MODEL, clients.backend, lambda: clip_search.embed_images(client, module, [pictures[i] for i in missing]))
        errors = {missing[j]: message for j, message in embedded.errors.items()}
        with self._lock:
            for row, j in enumerate(embedded.indices):
                self._vectors[keys[missing[j]]] = embedded.vectors[row]
            found = []
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                found.append(vector)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        return found, errors


def clip_search_collection(
    clients: Clients, index: ClipIndex, collection: Sequence[Path], text_query: str, image_query: bytes | None, top_k: int
) -> SearchResult:
    """Rank the collection against a text (clip_text_embedding) or a picture
    (clip_image_embedding) with clip_search.rank, best first."""
    if not collection:
        raise UserError("The collection is empty: upload pictures or use the samples.")
    if len(collection) > MAX_COLLECTION:
        raise UserError(f"{len(collection)} pictures: the page searches up to {MAX_COLLECTION}.")
    text_query = (text_query or "").strip()
    if not text_query and image_query is None:
        raise UserError("Write a text query or choose a query picture.")
    vectors, errors = index.embed(clients, [read_picture(path) for path in collection])
    skipped = {collection[i].name: message for i, message in errors.items()}
    kept = [i for i, vector in enumerate(vectors) if vector is not None]
    if not kept:
        raise UserError("No picture of the collection could be embedded: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    module, client = clients.raw()
    if text_query:
        query = call(clip_search.TEXT_MODEL, clients.backend, lambda: clip_search.embed_texts(client, module, [text_query]))[0]
    else:
        (query,), query_errors = index.embed(clients, [image_query])
        if query is None:
            raise UserError(f"`{clip_search.IMAGE_MODEL}` refused the query picture: {query_errors[0]}")
    ranked = clip_search.rank(np.stack([vectors[i] for i in kept]), query, top_k)
    return SearchResult([Hit(collection[kept[row]].name, str(collection[kept[row]]), score) for row, score in ranked], skipped)


# -- Stable Diffusion ------------------------------------------------------------------


@dataclass
class Step:
    """One event of a generation: a step (with a preview when one came), the
    final picture, or the end of a stopped run."""

    step: int
    preview: np.ndarray | None = None
    image: np.ndarray | None = None
    stopped: bool = False


@dataclass
class Update:
    """What the page shows of a generation: the steps received since the
    previous update (in order), the latest of them and its preview, or the
    end (done, with the picture, or stopped)."""

    state: str  # running | done | stopped
    step: int = 0
    new_steps: list[int] = field(default_factory=list)
    preview: np.ndarray | None = None
    image: np.ndarray | None = None


def coalesced(events: Iterator[Step], interval: float, clock=time.monotonic) -> Iterator[Update]:
    """Step events folded into page updates: while steps arrive, one update
    at most every `interval` seconds, carrying every step since the last one;
    the end at once, with whatever is pending. (A fast stream would
    otherwise cost the page an update per step, and the CPU those take is
    the server's on a small machine.) Closing this closes `events`."""
    pending, sent_at = Update("running"), float("-inf")
    try:
        for event in events:
            if event.stopped or event.image is not None:
                yield Update("stopped" if event.stopped else "done", pending.step, pending.new_steps, pending.preview, event.image)
                return
            pending.step = event.step
            pending.new_steps.append(event.step)
            if event.preview is not None:
                pending.preview = event.preview
            if clock() - sent_at >= interval:
                sent_at = clock()
                yield pending
                pending = Update("running", pending.step)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


class Generations:
    """The streams running per browser session, so that Stop cancels that
    session's stream and nobody else's."""

    def __init__(self):
        self._running: dict[str, set[StableDiffusionClient]] = {}
        self._lock = threading.Lock()

    def add(self, session: str, client: StableDiffusionClient) -> None:
        with self._lock:
            self._running.setdefault(session, set()).add(client)

    def remove(self, session: str, client: StableDiffusionClient) -> None:
        with self._lock:
            self._running.get(session, set()).discard(client)

    def stop(self, session: str) -> int:
        """Cancel the session's streams; how many there were."""
        with self._lock:
            running = list(self._running.pop(session, set()))
        for client in running:
            client.cancel()
        return len(running)


_DONE = object()


def generate(clients: Clients, generations: Generations, session: str, prompt: str, **settings) -> Iterator[Step]:
    """The step events of one stable_diffusion_stream request
    (StableDiffusionClient.generate_stream over its own connection: each
    session's generation is a stream of its own). Closing the iterator early
    (the page's Stop, a cancelled API job) cancels the stream on the server."""
    if not (prompt or "").strip():
        raise UserError("Write a prompt first.")
    backend: Backend = clients.backend
    client = call("stable_diffusion_stream", backend, lambda: StableDiffusionClient(backend.url, backend.protocol, tls=backend.tls))
    events: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            image = client.generate_stream([prompt], lambda step, preview: events.put(Step(step, preview)), **settings)
            events.put(Step(-1, image=image[0]) if image is not None else Step(-1, stopped=True))
        except BaseException as error:  # handed to the page's thread, which reports it
            events.put(error)
        finally:
            events.put(_DONE)

    generations.add(session, client)
    worker = threading.Thread(target=work, name=f"sd-{session}", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not _DONE:
            if isinstance(event, BaseException):
                raise failure(event, backend, "stable_diffusion_stream") from event
            yield event
    finally:
        client.cancel()  # a no-op once the stream has ended
        generations.remove(session, client)
        # the page's last update waits for this generator to end: the stream's
        # and the connection's shutdown need not
        threading.Thread(target=_close_when_done, args=(worker, client), name=f"sd-close-{session}", daemon=True).start()


def _close_when_done(worker: threading.Thread, client: StableDiffusionClient) -> None:
    worker.join()
    client.close()


# -- Server ------------------------------------------------------------------------------


@dataclass
class ModelRow:
    model: str
    versions: str
    state: str
    requests: int
    failures: int
    inferences: int
    queue_ms: float | None
    compute_ms: float | None


def server_state(clients: Clients, also: Sequence[str] = ()) -> list[ModelRow]:
    """Every loaded model (named by the metrics) and `also` (the page's
    models, so one that failed to load shows as such): its versions and
    state from the open health and metadata APIs, its counts and mean queue
    and compute milliseconds per request from the metrics."""
    backend = clients.backend
    counters = call(METRICS, backend, lambda: triton_metrics.read(backend.metrics_url))
    models = sorted({model for model, _ in counters} | set(also))
    module, client = clients.raw()
    rows = []
    for model in models:
        ready = call(model, backend, lambda: client.is_model_ready(model))
        loaded = {version: c for (name, version), c in counters.items() if name == model}
        totals = triton_metrics.ModelCounters(*(sum(getattr(c, f) for c in loaded.values()) for f in ("requests", "failures", "inferences", "executions", "queue_us", "compute_infer_us")))
        rows.append(
            ModelRow(
                model=model,
                versions=", ".join(sorted(loaded)) or "-",
                state="READY" if ready else "UNAVAILABLE",
                requests=totals.requests,
                failures=totals.failures,
                inferences=totals.inferences,
                queue_ms=totals.queue_ms_per_request,
                compute_ms=totals.compute_ms_per_request,
            )
        )
    return rows
