"""Any diffusers video pipeline by class name: a :class:`Family` read from the pipeline's own ``__call__``.

A row names it with ``pipeline: MotifVideoPipeline`` and a hub id or local folder as ``model``
(a folder, or a cached repo, whose ``model_index.json`` names such a class needs no ``pipeline:``).
Its parameters are the call's: each name whose annotation (or default) is one scalar type
(``bool``, ``int``, ``float``, ``str``, or a list of one of them, as ``prompt: str | list[str]``
reads) becomes a field with the call's default, and each image or video input (a
``PipelineImageInput`` or a list of PIL images) becomes an input file, read, hashed and
recorded as a curated family's are. What cannot be written in a manifest (``latents``, the
``*_embeds``, callbacks, ``*_kwargs``, tensors, the generator and the output type, which
videosweep sets) is left out, and ``videosweep models --pipeline NAME`` lists it as such.

The family is the same record as a curated one (:class:`Family`) without what only a person can
add: ranges, a tiny twin, batching, speed hooks and a documented half precision (``dtype: auto``
is bfloat16 on a GPU, the precision of the recent video models). A "video pipeline" is one whose
call takes ``num_frames``, ``video_length``, ``video`` or ``frames``: every video pipeline of
diffusers 0.42 does, and no image pipeline. Its frames are asked for as numpy
(``output_type="np"``) and turned into uint8 as ``diffusers.utils.export_to_video`` does; the
time spent in the VAE's ``decode`` is the job's ``decode_s``, the rest of the call its ``denoise_s``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import time
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model

from .base import LoadOptions, Rendered, Stopwatch, VideoParams, from_pretrained, synchronize, to_uint8_frames
from ..pipeline_options import PipelineOptions
from .family import Family, FamilyError, one_video_per_call

if TYPE_CHECKING:
    import torch

#: A call that takes one of these is a video pipeline's.
VIDEO_CALL_PARAMETERS = frozenset({"num_frames", "video_length", "video", "frames"})
#: What videosweep passes itself: the job's generator, and its seed where a call takes one too.
SET_BY_VIDEOSWEEP = frozenset({"generator", "seed", "output_type", "return_dict"})
#: The keys a row has whatever its model (tasks.manifest.JobOptions), which a call's parameter cannot take over.
ROW_KEYS = frozenset({"model", "id", "family", "pipeline", "revision", "dtype", "variant", "generator_device"})
_NOT_WRITABLE = re.compile(r"(^latents$|_latents$|embeds|_kwargs$|^callback|^num_(videos|images)_per_prompt$)")
#: The mp4's rate where the call takes no frame rate: no docs say one for a pipeline met by name.
DEFAULT_FPS = 16
#: Names under which a call takes the frame rate: then it is also the mp4's.
FRAME_RATE_PARAMETERS = ("fps", "frame_rate", "target_fps")
UINT8_CONVERSION = "truncate"  # diffusers.utils.export_to_video: (frame * 255).astype(np.uint8)


class NotAVideoPipeline(LookupError):
    """A class name that is no diffusers video pipeline; the message says what would work."""


@functools.cache
def video_pipelines() -> dict[str, str]:
    """Every video pipeline class the installed diffusers exports, by name, with the first line of its docstring."""
    import diffusers

    found = {}
    for name in dir(diffusers):
        if not name.endswith("Pipeline"):
            continue
        try:
            cls = getattr(diffusers, name)
            parameters = inspect.signature(cls.__call__).parameters
        except Exception:  # noqa: BLE001 - a pipeline whose optional dependency is missing is not offered
            continue
        if VIDEO_CALL_PARAMETERS & set(parameters):
            found[name] = _first_line(cls.__doc__) or name
    return found


def pipeline_class(name: str) -> type:
    """The diffusers class ``name`` names, if it is a video pipeline; else :class:`NotAVideoPipeline`."""
    import diffusers

    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        close = difflib.get_close_matches(name, list(video_pipelines()), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise NotAVideoPipeline(
            f"diffusers {diffusers.__version__} has no pipeline class {name!r}; {hint}"
            "`videosweep models` lists the video pipelines it has"
        )
    if not VIDEO_CALL_PARAMETERS & set(inspect.signature(cls.__call__).parameters):
        raise NotAVideoPipeline(
            f"{name} is not a video pipeline (its call takes none of {', '.join(sorted(VIDEO_CALL_PARAMETERS))}); "
            "`videosweep models` lists the video pipelines diffusers has"
        )
    return cls


@functools.cache
def family(name: str) -> Family:
    """The :class:`Family` of the video pipeline class ``name`` (:class:`NotAVideoPipeline` if none)."""
    cls = pipeline_class(name)
    params, inputs, _ = read_call(cls)
    fps_name = next((candidate for candidate in FRAME_RATE_PARAMETERS if candidate in params.model_fields), "fps")
    if fps_name not in params.model_fields:
        rate = Field(
            DEFAULT_FPS,
            ge=1,
            le=240,
            description=f"frames per second of the mp4 (the pipeline takes no frame rate); default: {DEFAULT_FPS}",
            exclude_if=lambda value: value == DEFAULT_FPS,  # as a curated family's fps (base.fps_field)
        )
        params = create_model(params.__name__, __base__=params, fps=(int, rate))
    return Family(
        name=name,
        pipeline_class=name,
        description=f"by class name: {_first_line(cls.__doc__) or name}",
        models={},
        params=params,
        load=functools.partial(_load, cls),
        render=one_video_per_call(functools.partial(_render, inputs=inputs, fps_name=fps_name)),
        build_tiny=_no_tiny_twin,
        uint8_conversion=UINT8_CONVERSION,
        gpu_dtype="bfloat16",
        frames_param="num_frames" if "num_frames" in params.model_fields else None,
    )


@functools.cache
def read_call(cls: type) -> tuple[type[VideoParams], dict[str, str], dict[str, str]]:
    """The pydantic params of ``cls.__call__``, its input fields (name -> "image" or "video"), and the parameters left
    out, each with the reason."""
    from .base import image_field, video_field

    descriptions = _described(cls.__call__.__doc__ or "")
    annotations = _annotations(cls.__call__)
    fields: dict[str, Any] = {}
    inputs: dict[str, str] = {}
    left_out: dict[str, str] = {}
    for name, parameter in inspect.signature(cls.__call__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in SET_BY_VIDEOSWEEP:
            left_out[name] = "set by videosweep"
            continue
        if name in ROW_KEYS or name in PipelineOptions.model_fields:
            left_out[name] = f"`{name}` is a key of every row"
            continue
        if _NOT_WRITABLE.search(name):
            left_out[name] = "one video per job" if name.startswith("num_") else "a tensor, callback or keyword dict"
            continue
        annotation = annotations.get(name, parameter.annotation)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        description = descriptions.get(name, "")
        kind = _input_kind(name, annotation)
        if kind is not None:
            if default not in (None, ...):
                left_out[name] = "an input with a built-in value a file cannot restate"
                continue
            # the first frame's metrics compare an image-to-video's `image` alone (not an IP-adapter's, a reference)
            made = image_field(description, first_frame=name == "image", default=default) if kind == "image" else (
                video_field(description, default=default)
            )
            fields[name] = (Path if default is ... else Path | None, made)
            inputs[name] = kind
            continue
        scalar = _scalar(annotation, default)
        if scalar is None:
            left_out[name] = f"{_shown(annotation)}: not one bool, int, float or str"
            continue
        if default not in (None, ...) and not _holds(scalar, default):
            left_out[name] = f"default {default!r} is not of its type {_shown(annotation)}"
            continue
        clash = _column_clash(name, scalar)
        if clash:
            left_out[name] = clash
            continue
        if name in FRAME_RATE_PARAMETERS and scalar is float:
            scalar, default = int, default if default in (None, ...) else round(default)
        fields[name] = (scalar | None if default is None else scalar, Field(default, description=description))
    params = create_model(f"{cls.__name__}Params", __base__=VideoParams, **fields)
    return params, inputs, left_out


def _column_clash(name: str, scalar: Any) -> str | None:
    """Why a parameter cannot share the results column of a curated family's parameter of that name; None if it can
    (the same type, or an int in a float column)."""
    from . import FAMILIES
    from .base import scalar_type

    kind = scalar_type(scalar)
    for spec in FAMILIES.values():
        field = spec.params.model_fields.get(name)
        if field is not None:
            column = scalar_type(field.annotation)
            if column is int and kind is float and name in FRAME_RATE_PARAMETERS:
                return None  # a frame rate typed float (LTX-2's): the int column holds every real rate
            if column is not kind and not (column is float and kind is int):
                return f"{kind.__name__}, but its results column holds {column.__name__} (family {spec.name})"
            return None
    return None


def _holds(scalar: Any, value: Any) -> bool:
    """Whether ``value`` is one of ``scalar``'s values (an int is a float's)."""
    if typing.get_origin(scalar) is typing.Literal:
        return value in typing.get_args(scalar)
    if scalar is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, scalar) and (scalar is bool or not isinstance(value, bool))


def _annotations(function: Any) -> dict[str, Any]:
    """The parameters' annotations as objects, also where a module writes them as text (``from __future__ import
    annotations``): each evaluated in the function's module, else with the builtin types alone, else kept as text."""
    import typing as names

    plain = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
             "None": None, **{name: getattr(names, name) for name in ("Any", "List", "Literal", "Optional", "Union")}}
    found = {}
    for name, parameter in inspect.signature(function).parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            for namespace in (getattr(function, "__globals__", {}), plain):
                try:
                    annotation = eval(annotation, dict(namespace))  # noqa: S307 - diffusers' own annotation text
                    break
                except Exception:  # noqa: BLE001 - a name only the type checker knows: try the next namespace
                    continue
        found[name] = annotation
    return found


def _input_kind(name: str, annotation: Any) -> str | None:
    """ "image" or "video" for an input the call takes as images; None for anything else."""
    text = _shown(annotation)
    if not any(mark in text for mark in ("PipelineImageInput", "Image")):
        return None
    if any(mark in name for mark in ("video", "frames", "mask")):
        return "video"
    if "image" in name:
        return "image"
    one = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return "image" if one or "List" not in text.split("[", 1)[0] else "video"


def _scalar(annotation: Any, default: Any) -> type | None:
    """The one scalar type of an annotation (``Optional[int]``, ``str | list[str]``: int, str), else None."""
    if annotation is inspect.Parameter.empty:
        return type(default) if type(default) in (bool, int, float, str) else None
    if annotation in (bool, int, float, str):
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal and len({type(arg) for arg in args}) == 1 and type(args[0]) in (bool, int, float, str):
        return typing.Literal[args]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):  # `str | list[str]` is a str; `list[int] | None` is no scalar
        given = [arg for arg in args if arg is not type(None)]
        bare = {arg for arg in given if arg in (bool, int, float, str)}
        if bare == {int, float}:  # `Union[int, float]`: a float column holds both
            return float
        if len(bare) == 1 and all(_element(arg) in bare for arg in given):
            return bare.pop()
    return None


def _element(annotation: Any) -> type | None:
    """``int`` for ``int`` and ``list[int]``; None for anything else."""
    if annotation in (bool, int, float, str):
        return annotation
    if typing.get_origin(annotation) in (list, tuple) and len(typing.get_args(annotation)) >= 1:
        inner = typing.get_args(annotation)[0]
        return inner if inner in (bool, int, float, str) else None
    return None


def _shown(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "(none)"
    return str(annotation).replace("typing.", "").replace("PIL.Image.", "").replace("<class '", "").replace("'>", "")


_ARG = re.compile(r"^(\s+)(\w+) \(.*\):\s*$")


def _described(doc: str) -> dict[str, str]:
    """Parameter name -> the first sentence of its description in a diffusers ``Args:`` docstring section."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    for index, line in enumerate(lines):
        match = _ARG.match(line)
        if not match:
            continue
        indent, text = len(match.group(1)), []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            text.append(following.strip())
        sentence = " ".join(text).split(". ")[0].strip().rstrip(".")
        found.setdefault(match.group(2), sentence[:200])
    return found


def _first_line(doc: str | None) -> str:
    return next((line.strip() for line in (doc or "").splitlines() if line.strip()), "")


def _no_tiny_twin(path: Path) -> None:
    raise FamilyError("a pipeline met by class name has no tiny twin: give a hub id or a local folder as `model`")


def _load(cls: type, options: LoadOptions, device: str):
    """``cls.from_pretrained`` as the diffusers docs call it (dtype, variant, revision), on ``device``."""
    pipe = from_pretrained(cls, options)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _render(pipe, params: VideoParams, generator: torch.Generator, device: str, *, inputs, fps_name) -> Rendered:
    """One video: the call with the row's parameters and read inputs; the VAE's decode timed apart."""
    from diffusers.utils import load_image

    from ..video import read_video

    call = inspect.signature(type(pipe).__call__).parameters
    kwargs = {name: value for name, value in params if name in call}
    for name, kind in inputs.items():
        if kwargs.get(name) is not None:
            kwargs[name] = load_image(str(kwargs[name])) if kind == "image" else read_video(Path(kwargs[name]))[0]
    if "output_type" in call:
        kwargs["output_type"] = "np"
    if "seed" in call:  # a call that seeds itself too: with the job's seed
        kwargs["seed"] = generator.initial_seed()
    watch = Stopwatch(device)
    with _timed_decode(pipe, device) as decode:
        output = pipe(generator=generator, **kwargs)
    call_s = watch.lap()
    frames = _uint8_video(output, type(pipe).__name__)
    pipe.maybe_free_model_hooks()
    fps = getattr(params, fps_name) or DEFAULT_FPS  # a call's own frame rate may default to None
    return Rendered(frames, int(fps), call_s - decode.seconds, decode.seconds)


class _Clock:
    seconds = 0.0


@contextmanager
def _timed_decode(pipe, device: str):
    """Adds the wall time of each ``pipe.vae.decode`` call within the block to the yielded clock's ``seconds``."""
    clock = _Clock()
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "decode"):
        yield clock
        return
    decode = vae.decode

    def timed(*args, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        try:
            return decode(*args, **kwargs)
        finally:
            synchronize(device)
            clock.seconds += time.perf_counter() - start

    vae.decode = timed
    try:
        yield clock
    finally:
        del vae.decode  # the instance attribute: the class's method shows through again


def _uint8_video(output: Any, name: str):
    """The first video of a pipeline's output as uint8 frames (frames, height, width, 3)."""
    import numpy as np

    frames = getattr(output, "frames", None)
    if frames is None:
        raise ValueError(f"{name} returned no frames (a {type(output).__name__}): it is not a video pipeline")
    video = frames[0]
    if isinstance(video, list):  # PIL frames, from a pipeline that ignores output_type
        return np.stack([np.asarray(frame.convert("RGB")) for frame in video])
    video = np.asarray(video.float().cpu() if hasattr(video, "cpu") else video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} returned frames shaped {video.shape}, not (frames, height, width, 3)")
    return to_uint8_frames(video, UINT8_CONVERSION)
