"""The web demo: a Gradio app that translates an uploaded picture with a trained model (Choi et al., CVPR 2020,
Section 2: latent-guided and reference-guided synthesis).

A user uploads (or picks) a source image, then either chooses a target domain and a seed (the style code is
``F_y(z)`` with ``z`` drawn from the seed, optionally truncated towards the domain's mean style by ``psi``,
with a grid of more seeds on demand) or uploads a reference image of a known domain (the style code is
``E_y(x_ref)``). The handlers are plain functions of the model and the inputs, so they are tested without a
browser; :func:`build_app` wires them to the page and :func:`serve` runs it.

The app works offline: Gradio's analytics and version check are off, no share link is made, server-side
rendering (a Node process) is off, and the default theme's fonts are served by Gradio itself.

Example (what ``stargan-v2 serve --checkpoint demo_output/run`` does)::

    from stargan_v2 import StarGANv2
    from stargan_v2.serve import build_app, launch

    app = build_app(StarGANv2.from_checkpoint("demo_output/run", device="cpu"))
    launch(app, host="127.0.0.1", port=7860)  # serves until interrupted
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Gradio reads this when it is imported (and again at launch): no usage reports and no version check against
# api.gradio.app, so that the demo makes no request off the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr
from PIL import Image, ImageOps

from .api import StarGANv2
from .batching import spread
from .images import DECODE_ERRORS, IMAGE_EXTENSIONS, PathLike, find_images

#: Element ids of the page's parts, used by the browser test (and handy for custom CSS).
SOURCE_ID, RESULT_ID, VARIATIONS_ID = "source", "result", "variations"

#: The model's outputs are small (32 px for the demo model): show them scaled up with their pixels sharp rather
#: than blurred by the browser's smoothing.
CSS = (
    f"#{SOURCE_ID} img, #{RESULT_ID} img {{ width: 100%; height: 100%; object-fit: contain; }}\n"
    f"#{RESULT_ID} img, #{VARIATIONS_ID} img {{ image-rendering: pixelated; }}"
)

#: The largest seed accepted: latents come from a CPU generator seeded with it (see ``latents_from_seeds``).
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be. ``max_mb`` is also given to Gradio, which refuses bigger files before they are
    stored; ``max_pixels`` is checked from the image header before the pixels are decoded, so a small file
    that would decode to a huge image (a "decompression bomb") is refused without using the memory."""

    max_mb: float = 10.0
    max_pixels: int = 4096 * 4096

    @property
    def max_bytes(self) -> int:
        """``max_mb`` in bytes (a megabyte is 2**20 bytes, as Gradio counts)."""
        return int(self.max_mb * 2**20)

    def __post_init__(self) -> None:
        if self.max_mb <= 0 or self.max_pixels <= 0:
            raise ValueError(f"upload limits must be positive, got max_mb={self.max_mb}, max_pixels={self.max_pixels}")


# ----------------------------------------------------------------------------------------------------------
# Handlers: plain functions of the model and the page's inputs
# ----------------------------------------------------------------------------------------------------------


def read_upload(upload: Any, what: str, limits: UploadLimits = UploadLimits()) -> Image.Image:
    """An uploaded image as RGB, or a ``gr.Error`` that says what is wrong with it.

    ``upload`` is what Gradio passes for an image input when the event does not preprocess it (a dict with
    the stored file's ``path``), a file path, a PIL image, or ``None`` when nothing was uploaded.
    """
    if upload is None:
        raise _refuse(f"Upload a {what} first (or pick one of the examples).", title="No image")
    if isinstance(upload, Image.Image):
        image = upload
    else:
        path = Path(upload["path"] if isinstance(upload, dict) else upload)
        name = html.escape(upload.get("orig_name") or path.name) if isinstance(upload, dict) else html.escape(path.name)
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise _refuse(
                f"The {what} ({name}) is {size / 2**20:.1f} MB; the limit is {limits.max_mb:g} MB.",
                title="File too large",
            )
        try:
            with Image.open(path) as opened:
                # Image.open reads only the header: the size is known before any pixel is decoded.
                _check_pixels(opened.size, what, name, limits)
                # Phone photos store their rotation in EXIF; apply it so the model sees the picture upright.
                image = ImageOps.exif_transpose(opened).convert("RGB")  # decodes the whole file
        except gr.Error:
            raise  # our own refusal (gr.Error is a ValueError, which the next clause would take for a bad file)
        except DECODE_ERRORS as e:
            if isinstance(e, Image.DecompressionBombError):
                raise _refuse(f"The {what} ({name}) has too many pixels to decode.", title="Image too large") from e
            raise _refuse(
                f"The {what} ({name}) is not an image that can be read. Upload a picture file: "
                f"{', '.join(IMAGE_EXTENSIONS)} (or any format Pillow reads).",
                title="Not an image",
            ) from e
    _check_pixels(image.size, what, "", limits)
    return image.convert("RGB")


def check_upload(upload: Any, what: str, limits: UploadLimits = UploadLimits()) -> None:
    """Raise the ``gr.Error`` of :func:`read_upload` for an unusable upload; nothing happens for a good one."""
    if upload is not None:  # a cleared image also fires the event
        read_upload(upload, what, limits)


def _refuse(message: str, title: str) -> gr.Error:
    """The error shown to the user for a bad input; not logged with a traceback, as it is not the server's fault."""
    return gr.Error(message, title=title, print_exception=False)


def _check_pixels(size: tuple[int, int], what: str, name: str, limits: UploadLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        named = f" ({name})" if name else ""
        raise _refuse(
            f"The {what}{named} is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels "
            f"(e.g. {int(limits.max_pixels**0.5)}x{int(limits.max_pixels**0.5)}). Resize it and try again.",
            title="Image too large",
        )


def _domain(model: StarGANv2, domain: Any) -> str:
    if not isinstance(domain, str) or domain not in model.domains:
        raise _refuse(f"Choose a domain: one of {', '.join(model.domains)}.", title="No domain")
    return domain


def _seed(seed: Any) -> int:
    # A number box can be cleared or given a fraction; say what is accepted rather than failing inside torch.
    if not isinstance(seed, (int, float)) or isinstance(seed, bool) or seed != int(seed) or not 0 <= seed <= MAX_SEED:
        raise _refuse(f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed}.", title="Bad seed")
    return int(seed)


def _psi(psi: Any) -> float:
    if not isinstance(psi, (int, float)) or isinstance(psi, bool) or not 0.0 <= psi <= 1.0:
        raise _refuse(f"psi must be between 0 and 1, got {psi}.", title="Bad psi")
    return float(psi)


def translate_latent(
    model: StarGANv2, source: Any, domain: Any, seed: Any, psi: Any, limits: UploadLimits = UploadLimits()
) -> Image.Image:
    """Latent-guided translation of the source into ``domain`` with the style of ``seed``, truncated by ``psi``
    (1 = none, 0 = the domain's mean style)."""
    image = read_upload(source, "source image", limits)
    return model.translate_grid(image, domain=_domain(model, domain), seed=_seed(seed), psi=_psi(psi))[0][0]


def more_variations(
    model: StarGANv2,
    source: Any,
    domain: Any,
    seed: Any,
    psi: Any,
    n: int = 8,
    limits: UploadLimits = UploadLimits(),
) -> list[tuple[Image.Image, str]]:
    """``n`` latent-guided translations with the seeds ``seed, seed + 1, ...``, captioned with their seeds
    (the first is the single translation's image)."""
    image = read_upload(source, "source image", limits)
    first = _seed(seed)
    seeds = [k for k in range(first, first + n) if k <= MAX_SEED]
    results = model.translate_grid(image, domain=_domain(model, domain), seed=seeds, psi=_psi(psi))[0]
    return [(result, f"seed {k}") for result, k in zip(results, seeds, strict=True)]


def translate_reference(
    model: StarGANv2, source: Any, reference: Any, reference_domain: Any, limits: UploadLimits = UploadLimits()
) -> Image.Image:
    """Reference-guided translation: the source with the style of the reference, which shows
    ``reference_domain`` (the style encoder needs the reference's domain)."""
    image = read_upload(source, "source image", limits)
    ref = read_upload(reference, "reference image", limits)
    return model.translate_grid(image, reference=ref, domain=_domain(model, reference_domain))[0][0]


# ----------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------


def default_examples(checkpoint: PathLike, per_domain: int = 2) -> list[Path]:
    """Example sources for a checkpoint of the demo: ``per_domain`` validation images of each domain from the
    dataset that the demo writes beside its run (``OUT/data/val`` for ``OUT/run``); none for other checkpoints."""
    path = Path(checkpoint).resolve()
    run = path if path.is_dir() else path.parent.parent  # OUT/run or OUT/run/checkpoints/ema_N.safetensors
    val = run.parent / "data" / "val"
    if not val.is_dir():
        return []
    examples: list[Path] = []
    for folder in sorted(d for d in val.iterdir() if d.is_dir()):
        examples += find_images(folder)[:per_domain]
    return examples


def example_images(folder: PathLike, n: int = 8) -> list[Path]:
    """``n`` images spread over a folder (searched recursively), to offer as examples."""
    found = find_images(Path(folder))
    if not found:
        raise FileNotFoundError(f"{folder} holds no images (searched recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return spread(found, n)


def build_app(
    model: StarGANv2,
    examples: Sequence[PathLike] = (),
    variations: int = 8,
    limits: UploadLimits = UploadLimits(),
    checkpoint_name: str | None = None,
) -> gr.Blocks:
    """The Gradio page for ``model``: source image (upload or an example), a latent-guided tab (domain, seed,
    ``psi``, a grid of ``variations`` more seeds) and a reference-guided tab, and the results."""
    if variations < 1:
        raise ValueError(f"variations must be at least 1, got {variations}")
    with gr.Blocks(title="StarGAN v2", analytics_enabled=False) as app:
        gr.Markdown(_header(model, limits, checkpoint_name))
        with gr.Row():
            with gr.Column():
                source = _source_image(examples)
            with gr.Column():
                with gr.Tab("Latent-guided"):
                    latent = _latent_tab(list(model.domains), variations)
                with gr.Tab("Reference-guided"):
                    reference = _reference_tab(list(model.domains))
                result = _result_image()
        gallery = _variations_gallery(variations)
        page = _Page(source, latent, reference, result, gallery)
        _wire_translations(page, model, variations, limits)
        _wire_upload_checks(page, limits)
    return app


@dataclass(frozen=True)
class _LatentTab:
    domain: gr.Dropdown
    seed: gr.Number
    psi: gr.Slider
    translate: gr.Button
    more: gr.Button


@dataclass(frozen=True)
class _ReferenceTab:
    reference: gr.Image
    domain: gr.Dropdown
    translate: gr.Button


@dataclass(frozen=True)
class _Page:
    """The page's inputs, buttons and outputs, for wiring the events."""

    source: gr.Image
    latent: _LatentTab
    reference: _ReferenceTab
    result: gr.Image
    gallery: gr.Gallery


def _header(model: StarGANv2, limits: UploadLimits, checkpoint_name: str | None) -> str:
    """The page's title and what it does (the domains, the model, the image size and the upload limits)."""
    loaded = f" Model: `{html.escape(checkpoint_name)}`." if checkpoint_name else ""
    return (
        "# StarGAN v2\n"
        f"Translate a picture into another domain ({', '.join(map(html.escape, model.domains))}).{loaded} The model "
        f"works on {model.img_size}x{model.img_size} images and sees the centred square of yours. Uploads up "
        f"to {limits.max_mb:g} MB and {limits.max_pixels:,} pixels."
    )


def _source_image(examples: Sequence[PathLike]) -> gr.Image:
    """The source image input, with the examples to pick from below it (if any)."""
    source = gr.Image(
        label="Source image",
        type="filepath",
        sources=["upload", "clipboard"],
        height=320,
        elem_id=SOURCE_ID,
    )
    if examples:
        gr.Examples([[str(p)] for p in examples], inputs=[source], label="Or pick a source")
    return source


def _latent_tab(domains: list[str], variations: int) -> _LatentTab:
    """The latent-guided controls: target domain, seed, ``psi`` and the two buttons."""
    domain = gr.Dropdown(domains, value=domains[-1], label="Target domain", elem_id="domain")
    seed = gr.Number(0, label="Seed (each seed is one style)", precision=0, minimum=0, elem_id="seed")
    psi = gr.Slider(
        0.0,
        1.0,
        value=1.0,
        step=0.05,
        label="psi: truncation towards the domain's mean style (1 = none)",
        elem_id="psi",
    )
    with gr.Row():
        translate = gr.Button("Translate", variant="primary", elem_id="translate")
        more = gr.Button(f"More variations ({variations} seeds)", elem_id="more")
    return _LatentTab(domain, seed, psi, translate, more)


def _reference_tab(domains: list[str]) -> _ReferenceTab:
    """The reference-guided controls: the reference image, its domain and the button."""
    reference = gr.Image(
        label="Reference image (gives the style)",
        type="filepath",
        sources=["upload", "clipboard"],
        elem_id="reference",
    )
    domain = gr.Dropdown(domains, value=domains[0], label="The reference's domain", elem_id="ref_domain")
    translate = gr.Button("Translate like the reference", variant="primary", elem_id="translate_ref")
    return _ReferenceTab(reference, domain, translate)


def _result_image() -> gr.Image:
    # No "share" button: it posts the image to Hugging Face. PNG: the result as computed, not recompressed.
    return gr.Image(
        label="Result",
        type="pil",
        format="png",
        height=320,
        interactive=False,
        buttons=["download", "fullscreen"],
        elem_id=RESULT_ID,
    )


def _variations_gallery(variations: int) -> gr.Gallery:
    return gr.Gallery(
        label="Variations",
        columns=min(variations, 8),
        height=180 * -(-variations // 8),  # as tall as its rows of thumbnails (8 a row), not a big fixed box
        format="png",
        interactive=False,
        buttons=["download", "fullscreen"],
        elem_id=VARIATIONS_ID,
    )


def _wire_translations(page: _Page, model: StarGANv2, variations: int, limits: UploadLimits) -> None:
    """The three buttons call the handlers with the model."""
    # preprocess=False: the handlers get the stored upload's path (Gradio has already checked it is one of
    # its uploads) and open it themselves, so that a file that is not an image is refused with a message
    # saying so rather than a decoding error. One concurrency queue for all events: one translation at a
    # time, since each already uses all the CPU threads (or the GPU).
    events: dict[str, Any] = {"preprocess": False, "concurrency_id": "model", "concurrency_limit": 1}
    latent, reference = page.latent, page.reference
    latent_inputs = [page.source, latent.domain, latent.seed, latent.psi]
    latent.translate.click(
        lambda s, d, k, p: translate_latent(model, s, d, k, p, limits),
        latent_inputs,
        page.result,
        api_name="translate_latent",
        **events,
    )
    latent.more.click(
        lambda s, d, k, p: more_variations(model, s, d, k, p, variations, limits),
        latent_inputs,
        page.gallery,
        api_name="more_variations",
        **events,
    )
    reference.translate.click(
        lambda s, r, d: translate_reference(model, s, r, d, limits),
        [page.source, reference.reference, reference.domain],
        page.result,
        api_name="translate_reference",
        **events,
    )


def _wire_upload_checks(page: _Page, limits: UploadLimits) -> None:
    """Check each upload as it arrives, so that a file that is no picture (or too big a one) is refused at once
    rather than when a translation is asked for. Not in the model's queue: it is quick."""
    for image, what in ((page.source, "source image"), (page.reference.reference, "reference image")):
        image.upload(
            lambda upload, what=what: check_upload(upload, what, limits),
            image,
            None,
            preprocess=False,
            api_visibility="private",
        )


def launch(
    app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, limits: UploadLimits = UploadLimits(), block: bool = True
) -> str:
    """Serve ``app`` on ``host:port`` with the offline settings, until interrupted; with ``block=False``, return
    the local URL once the server is up instead (stop it with ``app.close()``)."""
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,  # a share link goes through Gradio's tunnel servers
        ssr_mode=False,  # server-side rendering starts a Node process; the page is plain static files without it
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        footer_links=["api", "settings"],  # no links off the machine
        run_history=False,  # its page offers to save runs to a Hugging Face bucket
        css=CSS,
        max_file_size=limits.max_bytes,  # checked by Gradio on upload, before the file is stored
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return url


def serve(
    checkpoint: PathLike,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    domains: Sequence[str] | None = None,
    examples: Sequence[PathLike] | None = None,
    fan_path: PathLike | None = None,
    limits: UploadLimits = UploadLimits(),
    block: bool = True,
) -> gr.Blocks:
    """Load ``checkpoint`` (any kind ``StarGANv2.from_checkpoint`` takes) and serve the demo page for it.

    ``examples`` default to a few validation images when the checkpoint is the demo's run (see
    :func:`default_examples`). Blocks until interrupted unless ``block=False``; returns the app.
    """
    model = StarGANv2.from_checkpoint(checkpoint, device=device, fan_path=fan_path, domains=domains)
    if examples is None:
        examples = default_examples(checkpoint)
    app = build_app(model, examples=examples, limits=limits, checkpoint_name=str(checkpoint))
    launch(app, host, port, limits, block)
    return app
