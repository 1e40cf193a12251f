"""Half precision on the CPU, and tiny folders that load as the docs load them (issue 14).

On a GPU every family loads in float16 (from the fp16 weight variant) or bfloat16; no other test
runs that path. Here each family's tiny twin renders a one-row manifest with ``dtype: float16``
and ``dtype: bfloat16`` through ``tasks.render.render_job`` on the CPU: the record is ``ok``, the
pipeline that rendered holds every part in that dtype (but what the docs keep in float32), the
denoiser is fed that dtype on every call, and the mp4 is the float32 render's up to precision
(no NaN gone black, no garbage). A float32 tensor meeting a half-precision weight raises on the
CPU as on a GPU, so this is the GPU's dtype path as far as a CPU runs it. With torch 2.13 every
CPU kernel these pipelines call takes both dtypes: no family needs a load-and-one-step fallback.

Item 5: every tiny folder loads with the docs' own ``Pipeline.from_pretrained(folder)`` in
float32 (no part in half precision beside a float32 UNet), and with ``torch_dtype=torch.float16,
variant="fp16"`` in float16.

Runtime: about 60 s on 2 CPU cores (15 families x float32/float16/bfloat16 renders of 2 steps at
tiny sizes, plus 15 x 2 loads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tasks.manifest import load_manifest
from tasks.models import FAMILIES, ensure_built, known_models
from tasks.render import RunContext, pipeline_cache, render_job
from tasks.video import read_mp4

from .conftest import ROCKET, make_video

PROMPT = "a rocket lifting off"
#: One small row per family: 2 denoising steps (video-to-video-sd: 4 at strength 0.5), a few tiny frames.
ROWS = {
    "animatediff": dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=48, num_frames=8, num_inference_steps=2
    ),
    "cogvideox": dict(prompt=PROMPT, negative_prompt="blurry", num_frames=9, num_inference_steps=2),
    "cogvideox-i2v": dict(image="rocket.png", prompt=PROMPT, num_frames=9, num_inference_steps=2),
    "i2vgen-xl": dict(
        image="rocket.png", prompt=PROMPT, negative_prompt="blurry", height=32, width=48, num_frames=4,
        num_inference_steps=2,
    ),
    "ltx": dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=64, num_frames=9, num_inference_steps=2,
        max_sequence_length=16,
    ),
    "ltx-i2v": dict(
        image="rocket.png", prompt=PROMPT, height=32, width=64, num_frames=9, num_inference_steps=2,
        max_sequence_length=16,
    ),
    "pia": dict(
        image="rocket.png", prompt=PROMPT, negative_prompt="blurry", height=32, width=48, num_frames=8,
        num_inference_steps=2,
    ),
    "svd": dict(image="rocket.png", height=48, width=64, num_frames=4, num_inference_steps=2),
    "text-to-video-sd": dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=48, num_frames=4, num_inference_steps=2
    ),
    "text2video-zero": dict(
        prompt=PROMPT, negative_prompt="blurry", video_length=4, height=32, width=48, num_inference_steps=2, t0=0, t1=1
    ),
    "text2video-zero-controlnet": dict(
        prompt=PROMPT, video="clip.mp4", num_frames=4, height=32, width=48, num_inference_steps=2
    ),
    "text2video-zero-pix2pix": dict(prompt=PROMPT, video="clip.mp4", num_frames=4, num_inference_steps=2),
    "video-to-video-sd": dict(
        prompt=PROMPT, video="clip.mp4", height=32, width=48, strength=0.5, num_inference_steps=4
    ),
    "wan": dict(
        prompt=PROMPT, negative_prompt="blurry", height=32, width=32, num_frames=9, num_inference_steps=2,
        max_sequence_length=16,
    ),
    "wan-i2v": dict(
        image="rocket.png", prompt=PROMPT, max_area=48 * 64, num_frames=9, num_inference_steps=2,
        max_sequence_length=16,
    ),
}
#: Parts the docs load in float32 whatever the pipeline's dtype (Wan: "for better decoding quality").
FLOAT32_BY_DOCS = {"wan": {"vae"}, "wan-i2v": {"vae", "image_encoder"}}
#: A separately stored part of a family (``COMPONENTS``): the pipeline argument and the class the docs load it with.
COMPONENT_LOADERS = {"adapter": ("motion_adapter", "MotionAdapter"), "controlnet": ("controlnet", "ControlNetModel")}
TINY_MODELS = sorted(name for name, ref in known_models().items() if ref.tiny)


def test_every_family_has_a_row_here():
    assert set(ROWS) == set(FAMILIES), "give a new family a small row in ROWS"


# -- item 5: the docs' own from_pretrained calls on every tiny folder ------------------------------


def docs_load(name: str, **dtype_kwargs):
    """``Pipeline.from_pretrained(folder, <separate parts>, **dtype_kwargs)``, as the docs write it."""
    import diffusers

    ref = known_models()[name]
    ensure_built(ref)
    cls = getattr(diffusers, ref.module.PIPELINE_CLASS)
    parts = {}
    for component, folder in ref.components:
        argument, part_class = COMPONENT_LOADERS[component]
        # the docs load adapters and ControlNets without a weight variant, in the pipeline's dtype
        dtype = {"torch_dtype": dtype_kwargs["torch_dtype"]} if "torch_dtype" in dtype_kwargs else {}
        parts[argument] = getattr(diffusers, part_class).from_pretrained(folder, **dtype)
    # parts a folder saves as [null, null] (no safety checker) are passed as None, as the docs' repos need none
    index = json.loads((Path(ref.source) / "model_index.json").read_text())
    parts.update({part: None for part, entry in index.items() if entry == [None, None]})
    return cls.from_pretrained(ref.source, **dtype_kwargs, **parts)


def wrong_dtypes(pipe, dtype: torch.dtype, float32_parts: set[str] = frozenset()) -> dict[str, set[str]]:
    """Per part of ``pipe``, its parameters not in ``dtype`` (``float32_parts``: not in float32).

    Modules a class keeps in float32 (``_keep_in_fp32_modules``: Wan's norms and time embedder,
    T5's ``wo``) may be float32 in any dtype, as ``from_pretrained`` leaves them.
    """
    wrong = {}
    for part, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        expected = torch.float32 if part in float32_parts else dtype
        keep = {*(getattr(module, "_keep_in_fp32_modules", None) or ())}
        keep |= {*(getattr(module, "_keep_in_fp32_modules_strict", None) or ())}
        found = {
            name
            for name, parameter in module.named_parameters()
            if parameter.dtype != expected and not (parameter.dtype == torch.float32 and keep & set(name.split(".")))
        }
        if found:
            wrong[part] = found
    return wrong


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_folder_loads_in_float32_with_the_docs_plain_call(name):
    pipe = docs_load(name)
    assert not wrong_dtypes(pipe, torch.float32)
    assert list(Path(known_models()[name].source).rglob("*.fp16.safetensors")), "the fp16 variant is still there"


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_folder_loads_in_float16_with_the_docs_fp16_call(name):
    pipe = docs_load(name, torch_dtype=torch.float16, variant="fp16")
    assert not wrong_dtypes(pipe, torch.float16)


# -- half precision through the render path ----------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("half-inputs")
    shutil.copy(ROCKET, folder / "rocket.png")
    make_video(folder / "clip.mp4")
    return folder


def render(family: str, dtype: str, inputs: Path) -> tuple[dict, np.ndarray, list[torch.dtype]]:
    """One row through ``render_job`` with ``dtype``: its record, its uint8 frames, the dtypes the denoiser was fed.

    The frames are the family's render's, before the mp4 (H.264 at these sizes moves pixels by
    6-30 levels on average, far more than half precision does).
    """
    defaults = {"model": f"tiny-{family}", "dtype": dtype}
    manifest = {"name": "half", "defaults": defaults, "rows": [ROWS[family]], "seeds": [3]}
    path = inputs / f"{family}-{dtype}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    (job,) = load_manifest(path, "cpu").jobs
    run = RunContext("half", inputs / "out" / f"{family}-{dtype}", "cpu", "half", str(path), "-")
    # the pipeline render_job will take from the cache: watch what its denoiser is fed
    pipe, _, _, _ = pipeline_cache().get(job, "cpu", run.run_id)
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    fed: list[torch.dtype] = []

    def watch(module, args, kwargs):
        latents = kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None))
        fed.append(latents.dtype)

    module = FAMILIES[family]
    family_render, rendered = module.render, []

    def render_and_keep(*args, **kwargs):
        rendered.append(family_render(*args, **kwargs))
        return rendered[-1]

    handle = denoiser.register_forward_pre_hook(watch, with_kwargs=True)
    module.render = render_and_keep
    try:
        record = render_job(job, run)
    finally:
        module.render = family_render
        handle.remove()
    assert record["status"] == "ok", f"{record['error_type']}: {record['error']}"
    assert record["cache_hit"], "rendered by another pipeline than the one inspected"
    assert not wrong_dtypes(pipe, getattr(torch, dtype), FLOAT32_BY_DOCS.get(family, set()))
    (video,) = rendered
    assert read_mp4(run.out_root / record["video_path"])[0].shape == video.frames.shape, "the mp4 holds the frames"
    return record, video.frames, fed


@pytest.fixture(scope="module")
def float32_frames(inputs):
    """Each family's float32 render, once per module: what a half-precision render must stay close to."""
    cache: dict[str, np.ndarray] = {}

    def get(family: str) -> np.ndarray:
        if family not in cache:
            cache[family] = render(family, "float32", inputs)[1]
        return cache[family]

    return get


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_renders_in_half_precision_on_the_cpu(family, dtype, inputs, float32_frames):
    record, frames, fed = render(family, dtype, inputs)
    assert record["dtype"] == dtype
    assert record["variant"] == ("fp16" if dtype == "float16" else None), "float16 reads the fp16 files, as the docs do"
    assert fed and set(fed) == {getattr(torch, dtype)}, f"the denoiser was fed {fed}"
    reference = float32_frames(family)
    assert frames.shape == reference.shape
    assert frames.std() > 5, "a flat video: NaN latents decode to black"
    difference = np.abs(frames.astype(int) - reference.astype(int))
    # measured (seed 3): mean 0.01-0.21 levels in float16, 0.3-1.8 in bfloat16; NaN or garbage is tens
    bound = {"float16": 1.0, "bfloat16": 4.0}[dtype]
    assert difference.mean() < bound, f"mean {difference.mean():.2f} levels from the float32 render"
