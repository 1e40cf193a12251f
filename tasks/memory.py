"""The memory ladder: a job that runs out of memory is tried again one rung lighter, as the diffusers docs advise.

Rungs add up: each keeps what the ones before it set. GPU-only rungs (CPU offload) are left
out on a CPU, and a rung that changes nothing for a job (a family without ``decode_chunk_size``,
an option the row already set) is not tried. A fallback keeps the job's id: what ran is
recorded in ``memory_rung``, the rungs that failed in ``memory_fallbacks``. VAE tiling may show
seams; the other rungs change speed and memory only. The forward-chunking rung runs the
denoiser's feed-forward one token at a time (``{chunk_size: 1, dim: 1}``, the lightest and
slowest), whatever the row's own ``forward_chunking`` was (which follows the docs: ``true`` is
``enable_forward_chunking()``, chunks of 1 along dim 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .jobs import Job
from .models import family_spec

_OFFLOAD_ORDER = ("none", "model", "sequential")


@dataclass(frozen=True)
class Rung:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # pipeline options (tasks.pipeline_options)
    params: dict[str, Any] = field(default_factory=dict)  # family parameters, where the family has them
    gpu_only: bool = False


LADDER = (
    Rung("asked"),
    Rung("model-offload", {"offload": "model"}, gpu_only=True),
    # the lightest chunking, as videosweep always chunked: one token at a time (a row's `forward_chunking` follows the docs)
    Rung("forward-chunking", {"forward_chunking": {"chunk_size": 1, "dim": 1}}),
    Rung("small-decode-chunks", params={"decode_chunk_size": 2}),
    Rung("vae-tiling", {"vae_slicing": True, "vae_tiling": True}),
    Rung("sequential-offload", {"offload": "sequential"}, gpu_only=True),
)


def ladder(job: Job, device: str) -> Iterator[tuple[str, Job]]:
    """``job`` as asked, then each lighter rung that changes something for it, as (rung name, job to render)."""
    fields = family_spec(job.family).params.model_fields
    options, params = dict(job.options), dict(job.params)
    for rung in LADDER:
        if rung.gpu_only and not device.startswith("cuda"):
            continue
        before = (dict(options), dict(params))
        for key, value in rung.options.items():
            if key == "offload":  # never back to a heavier offload than the row asked for
                value = max(value, options.get("offload", "none"), key=_OFFLOAD_ORDER.index)
            options[key] = value
        for key, value in rung.params.items():
            if key in fields:
                params[key] = min(value, params.get(key) or value)
        if rung.name == LADDER[0].name or (options, params) != before:
            yield rung.name, job.model_copy(update={"options": dict(options), "params": dict(params)})


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA or host allocation failure (torch raises these under several names)."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


class OutOfMemory(RuntimeError):
    """Every rung of the ladder ran out of memory."""
