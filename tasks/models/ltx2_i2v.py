"""LTX-2 image-to-video with audio (``LTX2ImageToVideoPipeline``): the image is the first frame, the prompt the
rest of the picture and the sound.

Loaded and called as in the diffusers docs (the ``LTX2ImageToVideoPipeline`` docstring, diffusers
0.42.1): the same repo as text-to-video (``Lightricks/LTX-2``, whose model_index.json names
``LTX2Pipeline``: a row picks this family by its model key or by ``family: ltx2-i2v``), bfloat16, the
image as loaded (the pipeline resizes it to width x height), the docs' negative prompt, 768x512, 121
frames at ``frame_rate=24.0``, 30 steps, guidance 3, exported with its sound as the text-to-video docs
do. The parameters are text-to-video's (:class:`tasks.models.ltx2.Params`: what a seed means, the
sound, the decode and the rounding work as there) plus the image and ``image_crf``.

``image_crf``: before encoding the image, the pipeline re-compresses it as one H.264 frame at this
CRF, as LTX-2 was trained (None: 33 for a Gemma 3 text encoder, LTX-2.0/2.3; 18 for LTX-2.5's Gemma 4;
0: as loaded). That re-compression needs PyAV (``pip install av``), which videosweep does not
install: a row whose CRF is not 0 fails with that fix named when PyAV is missing (before anything
renders), rather than mid-call. With PyAV the frames are the pipeline's own; videosweep does not
re-implement the step with its own ffmpeg, since another encoder build would give other pixels.
The hub layout cannot be checked offline (see ``ltx2``'s docstring); the tiny twin is ``ltx2``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from . import ltx2
from .base import LoadOptions, Rendered, Stopwatch, from_pretrained, image_field, rendered_videos
from .family import Family, one_video_per_call

if TYPE_CHECKING:
    import torch

#: The docs export numpy frames with ``encode_video``, which rounds them.
UINT8_CONVERSION = ltx2.UINT8_CONVERSION

#: Short keys for the released checkpoints (the text-to-video repo, loaded as image-to-video).
MODELS = {
    "ltx-2-i2v": {"source": "Lightricks/LTX-2", "dtype": "bfloat16", "variant": "none"},
}


class Params(ltx2.Params):
    """The call parameters of ``LTX2ImageToVideoPipeline``: text-to-video's, with its defaults, the image and its CRF."""

    image: Path = image_field("the first frame; the pipeline resizes it to width x height")
    image_crf: int | None = Field(
        None,
        ge=0,
        le=51,
        description="H.264 CRF the image is re-compressed at before encoding (None: the checkpoint's, 33 for LTX-2; "
        "0: none); needs PyAV (pip install av) unless 0",
    )


def load(options: LoadOptions, device: str):
    """The pipeline, on ``device``, ready to call."""
    from diffusers import LTX2ImageToVideoPipeline

    pipe = from_pretrained(LTX2ImageToVideoPipeline, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class PyAVMissing(RuntimeError):
    """The image's H.264 re-compression needs PyAV, which is not installed."""


def check_crf(pipe, params: Params) -> int:
    """The CRF the pipeline will re-compress the image at; raises :class:`PyAVMissing` naming the fix where that
    needs PyAV and it is not installed."""
    from diffusers.pipelines.ltx2.utils import resolve_default_image_crf
    from diffusers.utils import is_av_available

    crf = params.image_crf if params.image_crf is not None else resolve_default_image_crf(pipe.text_encoder)
    if crf != 0 and not is_av_available():
        raise PyAVMissing(
            f"LTX-2 image-to-video re-compresses the image as H.264 at CRF {crf} with PyAV, which is not installed: "
            "pip install av, or set image_crf: 0 to condition on the image as loaded"
        )
    return crf


def render(pipe, params: Params, generator: torch.Generator, device: str) -> Rendered:
    """Render one video and its sound; image encoding + denoising and the decode are timed apart."""
    from diffusers.utils import load_image

    # 1. the image, as loaded: the pipeline re-compresses it (image_crf) and resizes it to height x width
    image = load_image(str(params.image))
    check_crf(pipe, params)

    # 2. encode prompt and image, denoise video and audio; keep the last step's latents
    watch = Stopwatch(device)
    latents, audio_latents = ltx2.denoise(
        pipe,
        params,
        [generator],
        image=image,
        image_crf=params.image_crf,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
    )
    denoise_s = watch.lap()

    # 3. decode as LTX2ImageToVideoPipeline does after its loop (the same as LTX2Pipeline's)
    frames, audio = ltx2.decode(pipe, latents, audio_latents, params, generator)
    return rendered_videos(pipe, watch, denoise_s, [frames], UINT8_CONVERSION, params.frame_rate, audio=[audio])[0]


def build_tiny(path: Path) -> None:
    """The tiny checkpoint is ltx2's (``tiny_base``); building it here gives the same folder."""
    ltx2.build_tiny(path)


FAMILY = Family(
    name="ltx2-i2v",
    pipeline_class="LTX2ImageToVideoPipeline",
    description="LTX-2: image (+ text) -> video with audio, the image as first frame; same repo and parameters as ltx2",
    models=MODELS,
    params=Params,
    load=load,
    render=one_video_per_call(render),
    build_tiny=build_tiny,
    uint8_conversion=UINT8_CONVERSION,
    # the docs' dtype; `dtype: auto` on a GPU means this
    gpu_dtype="bfloat16",
    # The hub repo is shared with text-to-video, so is the tiny checkpoint.
    tiny_base="ltx2",
)
