"""The Gradio page: a tab per pipeline, each tab's button a named API
endpoint (ocr, classify, text_similarity, clip_search, generate,
server_state) that scripts call with gradio_client. ui/actions.py does the
work; this module lays out the page and turns results into what it shows.

(No `from __future__ import annotations` here: Gradio finds the gr.Request
parameter of a handler by its annotation.)"""

import functools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from ui import actions
from ui.backend import Backend, Clients, UserError
from ui.checkpoints import stand_in_notice
from ui.drawing import ocr_overlay, similarity_figure
from ui.samples import Samples

# the models the page uses: the server tab lists them even when not loaded
PAGE_MODELS = (
    *actions.OCR_MODELS, "orientation", *actions.VIT_MODELS, "text_embedding", "text2ids",
    "clip_image_embedding", "clip_text_embedding", "stable_diffusion_stream",
)
SIZES = ("server default", "64x64", "96x96", "128x128", "256x256", "512x512", "768x768")
SENTENCES = "\n".join(
    [
        "A cat sleeps on the warm windowsill.",
        "The kitten is napping in the sun by the window.",
        "Quarterly revenue grew by twelve percent.",
        "The company's sales rose this quarter.",
    ]
)
# small generated pictures (64x64 from the stand-in checkpoint) fill their box, pixels kept sharp
CSS = "#sd-preview img, #sd-final img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
MODEL_SET_SECONDS = 60.0
UPDATE_SECONDS = 0.2  # the Stable Diffusion tab's refresh while steps stream in
PREVIEWS = 5  # previews a generation asks for (one every steps/5)  # how long the OCR model set is taken as known


@dataclass
class PageState:
    """What the handlers share across requests (one per UI process)."""

    clients: Clients
    samples: Samples
    downloads: Path
    vit_references: actions.VitReferences
    clip_index: actions.ClipIndex
    vocabulary: actions.Vocabulary
    generations: actions.Generations
    model_set: tuple[float, str] | None = None


def shown_errors(handler: Callable) -> Callable:
    """A UserError becomes the page's error message (the cause is already in
    the UI's log); the handler's signature stays what Gradio inspects."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def build(backend: Backend, samples: Samples, work_dir: Path, generate_concurrency: int = 4) -> gr.Blocks:
    """The page for `backend`; `work_dir` holds the JSON downloads."""
    state = PageState(
        clients=Clients(backend),
        samples=samples,
        downloads=work_dir,
        vit_references=actions.VitReferences(samples.photos),
        clip_index=actions.ClipIndex(),
        vocabulary=actions.Vocabulary(),
        generations=actions.Generations(),
    )
    with gr.Blocks(title="Triton pipelines", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        gr.Markdown(f"# Triton pipelines\nEvery tab calls the server at `{backend.url}` ({backend.protocol}) through the clients in `clients/`.")
        with gr.Tabs():
            with gr.Tab("OCR", id="ocr"):
                _ocr_tab(state)
            with gr.Tab("Classify", id="classify"):
                _classify_tab(state)
            with gr.Tab("Text", id="text"):
                _text_tab(state)
            with gr.Tab("CLIP search", id="clip"):
                _clip_tab(state)
            with gr.Tab("Stable Diffusion", id="sd"):
                _stable_diffusion_tab(state, generate_concurrency)
            with gr.Tab("Server", id="server"):
                _server_tab(state)
    return page


def _notice(export_name: str) -> None:
    text = stand_in_notice(export_name)
    if text:
        gr.Markdown(text, elem_classes=["stand-in"])


# -- OCR ---------------------------------------------------------------------------------


def _ocr_tab(state: PageState) -> None:
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            picture = gr.File(label="Picture", file_types=["image"], elem_id="ocr-picture")
            gr.Examples([[str(path)] for path in state.samples.documents], inputs=[picture], label="Sample pages")
            model = gr.Radio(list(actions.OCR_MODELS), value="ocr", label="Model (ensemble or BLS)", elem_id="ocr-model")
            run = gr.Button("Recognise", variant="primary", elem_id="ocr-run")
            info = gr.Markdown(elem_id="ocr-info")
        with gr.Column(scale=2):
            overlay = gr.Image(label="Detected lines", format="jpeg", interactive=False, elem_id="ocr-overlay")
        with gr.Column(scale=2):
            table = gr.Dataframe(
                headers=["#", "text", "score"], datatype=["number", "str", "number"], label="Lines", wrap=True, max_height=640,
                column_widths=["12%", "66%", "22%"], elem_id="ocr-lines",
            )
            download = gr.File(label="Lines as JSON", interactive=False, elem_id="ocr-download")
    with gr.Accordion("JSON", open=False):
        lines_json = gr.JSON(label="lines", elem_id="ocr-json")

    @shown_errors
    def recognise(picture_path, model_name):
        data = actions.read_picture(picture_path)
        result = actions.ocr(state.clients, data, model_name)
        try:
            drawn = ocr_overlay(data, result.lines)
        except OSError as error:  # the server decoded what Pillow cannot: the table still stands
            actions.LOG.warning("overlay of %s: %s", picture_path, error)
            drawn = None
        rows = [[number, line["text"], round(line["text_score"], 4)] for number, line in enumerate(result.lines, 1)]
        target = state.downloads / uuid.uuid4().hex / f"{Path(picture_path).stem}-lines.json"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(result.lines, ensure_ascii=False, indent=1))
        summary = f"**{len(result.lines)} lines** in **{result.latency_ms:.0f} ms** from `{result.model}` · model set: {_model_set(state)}"
        return result.lines, drawn, rows, str(target), summary

    run.click(recognise, inputs=[picture, model], outputs=[lines_json, overlay, table, download, info], api_name="ocr")


def _model_set(state: PageState) -> str:
    now = time.monotonic()
    if state.model_set is None or now - state.model_set[0] > MODEL_SET_SECONDS:
        try:
            state.model_set = (now, actions.ocr_model_set(state.clients))
        except UserError as error:
            return f"unknown ({error})"
    return state.model_set[1]


# -- Classify ------------------------------------------------------------------------------


def _classify_tab(state: PageState) -> None:
    _notice("vit")
    with gr.Row():
        with gr.Column():
            picture = gr.File(label="Picture", file_types=["image"], elem_id="classify-picture")
            examples = state.samples.turned_pages + state.samples.photos[:4]
            gr.Examples([[str(path)] for path in examples], inputs=[picture], label="Samples")
            top_k = gr.Slider(1, 4, value=3, step=1, label="top-k", elem_id="classify-top-k")
            vit_model = gr.Radio(list(actions.VIT_MODELS), value="vit", label="ViT model (ensemble or one Python model)")
            run = gr.Button("Classify", variant="primary", elem_id="classify-run")
        with gr.Column():
            orientation = gr.Label(label="Orientation (clockwise degrees the content is turned by)", elem_id="classify-orientation")
            nearest = gr.Label(label="ViT: nearest sample photos (CLS-token cosine)", elem_id="classify-vit")
            info = gr.Markdown()

    @shown_errors
    def classify(picture_path, k, model_name):
        data = actions.read_picture(picture_path)
        result = actions.classify(state.clients, data, int(k), model_name, state.vit_references)
        summary = f"`{model_name}` last_hidden_state {list(result.vit_shape)}; orientation from `orientation`"
        return _label(result.orientation), _label(result.vit_nearest), summary

    run.click(classify, inputs=[picture, top_k, vit_model], outputs=[orientation, nearest, info], api_name="classify")


def _label(pairs: list[tuple[str, float]]) -> dict[str, float]:
    """gr.Label's value: {label: score}."""
    return dict(pairs)


# -- Text --------------------------------------------------------------------------------------


def _text_tab(state: PageState) -> None:
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(value=SENTENCES, lines=6, label="Sentences, one per line (numbered 1, 2, … in the heat map)", elem_id="text-sentences")
            run = gr.Button("Compare", variant="primary", elem_id="text-run")
        with gr.Column():
            heat_map = gr.Plot(label="Cosine similarity", elem_id="text-heatmap")
    tokens = gr.Dataframe(headers=["sentence", "position", "token", "id"], label="text2ids: tokens and ids", elem_id="text-tokens")
    with gr.Accordion("JSON", open=False):
        result_json = gr.JSON(label="sentences, embeddings and similarity")

    @shown_errors
    def compare(sentences_text):
        result = actions.text_similarity(state.clients, sentences_text, state.vocabulary)
        rows = [[number, position, token, token_id] for number, pairs in enumerate(result.tokens, 1) for position, (token, token_id) in enumerate(pairs)]
        payload = {
            "sentences": result.sentences,
            "similarity": result.similarity.tolist(),
            "embeddings": result.embeddings.tolist(),
            "ids": [[token_id for _, token_id in pairs] for pairs in result.tokens],
        }
        return payload, similarity_figure(len(result.sentences), result.similarity), rows

    run.click(compare, inputs=[text], outputs=[result_json, heat_map, tokens], api_name="text_similarity")


# -- CLIP search ----------------------------------------------------------------------------------


def _clip_tab(state: PageState) -> None:
    _notice("clip")
    with gr.Row():
        with gr.Column():
            uploads = gr.File(label="Your pictures (leave empty to search the samples)", file_count="multiple", file_types=["image"], elem_id="clip-collection")
            query = gr.Textbox(label="Text query", value="a photo of a cat", elem_id="clip-query")
            query_picture = gr.File(label="…or a query picture", file_types=["image"], elem_id="clip-query-picture")
            top_k = gr.Slider(1, 12, value=6, step=1, label="top-k")
            run = gr.Button("Search", variant="primary", elem_id="clip-run")
            info = gr.Markdown()
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Ranked", columns=3, elem_id="clip-gallery", format="jpeg")
    with gr.Accordion("JSON", open=False):
        hits_json = gr.JSON(label="hits")

    @shown_errors
    def search(uploaded, text_query, picture_path, k):
        collection = [Path(p) for p in uploaded] if uploaded else state.samples.photos
        image_query = actions.read_picture(picture_path, "query picture") if picture_path and not (text_query or "").strip() else None
        result = actions.clip_search_collection(state.clients, state.clip_index, collection, text_query, image_query, int(k))
        hits = [{"name": hit.name, "score": hit.score} for hit in result.hits]
        shown = [(hit.path, f"{hit.name}  {hit.score:.3f}") for hit in result.hits]
        source = "your pictures" if uploaded else "the sample photos"
        summary = f"{len(collection) - len(result.skipped)} pictures of {source} ranked" + "".join(f"\n- skipped {name}: {why}" for name, why in result.skipped.items())
        return hits, shown, summary

    run.click(search, inputs=[uploads, query, query_picture, top_k], outputs=[hits_json, gallery, info], api_name="clip_search")


# -- Stable Diffusion ---------------------------------------------------------------------------------


def _stable_diffusion_tab(state: PageState, concurrency: int) -> None:
    _notice("stable_diffusion")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", value="a lighthouse on a cliff at sunset, watercolor", elem_id="sd-prompt")
            negative = gr.Textbox(label="Negative prompt", value="", elem_id="sd-negative")
            steps = gr.Slider(1, 200, value=20, step=1, label="Steps", elem_id="sd-steps")
            guidance = gr.Slider(1.0, 15.0, value=7.5, step=0.5, label="Guidance scale")
            seed = gr.Number(value=0, precision=0, label="Seed")
            size = gr.Dropdown(list(SIZES), value=SIZES[0], label="Size (height x width)")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="sd-run")
                stop = gr.Button("Stop", variant="stop", elem_id="sd-stop")
        with gr.Column():
            status = gr.HTML(label="progress", elem_id="sd-status")
            with gr.Row():
                preview = gr.Image(label="Preview", format="png", interactive=False, height=256, elem_id="sd-preview")
                final = gr.Image(label="Final image", format="png", interactive=False, height=256, elem_id="sd-final")
            progress_json = gr.JSON(label="progress", visible=False)

    def generate(prompt_text, negative_text, step_count, guidance_scale, seed_value, size_text, request: gr.Request):
        total = int(step_count)
        settings = dict(steps=total, guidance_scale=float(guidance_scale), seed=int(seed_value or 0), preview_every=max(1, total // PREVIEWS))
        if negative_text and negative_text.strip():
            settings["negative_prompts"] = [negative_text]
        if size_text and size_text != SIZES[0]:
            height, width = (int(v) for v in size_text.split("x"))
            settings.update(height=height, width=width)
        yield {"step": 0, "new_steps": [], "steps": total, "state": "starting"}, None, None, progress_html(0, total, "Starting…")
        events = actions.generate(state.clients, state.generations, request.session_hash, prompt_text, **settings)
        try:
            for update in actions.coalesced(events, UPDATE_SECONDS):
                # the step count can pass `total`: some schedulers take a step more than asked (PNDM: steps + 1)
                shown = {"step": update.step, "new_steps": update.new_steps, "steps": total, "state": update.state}
                preview_shown = update.preview[0] if update.preview is not None else gr.skip()
                if update.state == "stopped":
                    yield shown, preview_shown, None, progress_html(update.step, total, f"<b>Stopped</b> after step {update.step}: the server cancelled the stream.")
                elif update.state == "done":
                    yield shown, preview_shown, update.image, progress_html(total, total, f"<b>Done</b>: {update.step} steps.")
                else:
                    yield shown, preview_shown, gr.skip(), progress_html(update.step, total, f"Step {update.step} of {total}")
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from None

    def stop_generation(request: gr.Request):
        # the running generator then gets the stream's end and says where it stopped
        state.generations.stop(request.session_hash)

    run.click(
        generate,
        inputs=[prompt, negative, steps, guidance, seed, size],
        outputs=[progress_json, preview, final, status],
        api_name="generate",
        concurrency_limit=concurrency,
        show_progress="hidden",  # the tab's own bar follows the steps; Gradio's would cover the pictures
    )
    stop.click(stop_generation, inputs=None, outputs=None, queue=False, api_name="stop")


def progress_html(step: int, total: int, text: str) -> str:
    """The Stable Diffusion tab's progress bar and line (a plain <progress>:
    one small update per refresh, nothing drawn over the pictures)."""
    return f'<progress value="{min(step, total)}" max="{total}" style="width: 100%"></progress><div>{text}</div>'


# -- Server --------------------------------------------------------------------------------------


def _server_tab(state: PageState) -> None:
    backend = state.clients.backend
    gr.Markdown(f"Models from the metrics at `{backend.metrics_url}` and the open health and metadata APIs (no key).")
    refresh = gr.Button("Refresh", variant="primary", elem_id="server-refresh")
    summary = gr.Markdown(elem_id="server-summary")
    table = gr.Dataframe(
        headers=["model", "versions", "state", "requests", "failures", "inferences", "queue ms/request", "compute ms/request"],
        label="Models",
        max_height=1200,
        elem_id="server-models",
    )

    @shown_errors
    def server_state():
        rows = actions.server_state(state.clients, PAGE_MODELS)
        shown = [
            [r.model, r.versions, r.state, r.requests, r.failures, r.inferences, _ms(r.queue_ms), _ms(r.compute_ms)] for r in rows
        ]
        ready = sum(r.state == "READY" for r in rows)
        return shown, f"**{ready} of {len(rows)} models READY** · {time.strftime('%H:%M:%S')}"

    refresh.click(server_state, inputs=None, outputs=[table, summary], api_name="server_state")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
