"""The pipeline cache: each pipeline is loaded once per process and kept for every job that needs it.

The cache is reached through :func:`pipeline_cache`, a function of an importable module, so
that a task shipped to another process by value still finds that process's one cache.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..jobs import Job
from ..models import ensure_built, family_spec, known_models
from ..pipeline_setup import Baseline, prepare_load
from ..provenance import environment


class PipelineLoadError(RuntimeError):
    """A pipeline that could not be loaded, reported again for each job that needed it."""


class PipelineCache:
    """Loaded pipelines by (pipeline key, device), bounded by the device's memory.

    Before a load, least recently used pipelines are freed (with gc and the CUDA cache emptied)
    until the new one fits in the free memory with some headroom: its size is known from an
    earlier load, else estimated from its weight files; if neither is known, everything goes.
    ``capacity`` caps the count as well, where given.
    """

    def __init__(self, capacity: int | None = None, headroom: float = 1.5) -> None:
        self.capacity = capacity
        self.headroom = headroom
        self._pipes: OrderedDict[tuple, Any] = OrderedDict()
        self._sizes: dict[tuple, int] = {}  # bytes of parameters and buffers, measured at load
        self._failed: dict[tuple, tuple[str, Exception]] = {}  # key -> (run_id, why it failed)
        self._ahead: dict[tuple, float] = {}  # key -> seconds of a load made before its first job (preload)

    def get(self, job: Job, device: str, run_id: str) -> tuple[Any, Baseline, float, bool]:
        """The pipeline for ``job``, its loaded setup, the seconds spent loading it, and whether it was loaded already.

        A load that failed is not tried again by later jobs of the same run: they fail at once
        with the same reason (a missing checkpoint would otherwise cost every job its timeout).
        """
        key = (job.pipeline_key, device)
        if key in self._pipes:
            self._pipes.move_to_end(key)
            ahead = self._ahead.pop(key, None)  # loaded for this job ahead of time: its load, as if it had waited
            return *self._pipes[key], ahead or 0.0, ahead is None
        failed_run, reason = self._failed.get(key, (None, None))
        if failed_run == run_id:
            raise PipelineLoadError(f"loading {job.model_id} failed earlier in this run: {reason}") from reason
        self._make_room(self._sizes.get(key) or weights_bytes(job), device)
        started = time.perf_counter()
        try:
            if job.model in known_models():  # a tiny checkpoint is built where it is first needed
                ensure_built(known_models()[job.model])
            offloaded = job.options.get("offload", "none") != "none"  # offload hooks move parts to the GPU
            pipe = family_spec(job.family).load(job.load_options, "cpu" if offloaded else device)
            pipe = prepare_load(pipe, job.options, device)
        except Exception as exc:
            self._failed[key] = (run_id, exc)
            raise
        self._failed.pop(key, None)
        self._pipes[key] = (pipe, Baseline.of(pipe))
        self._sizes[key] = pipeline_bytes(pipe)
        return pipe, self._pipes[key][1], time.perf_counter() - started, False

    def preload(self, job: Job, device: str) -> None:
        """Load ``job``'s pipeline before the job starts (while the Prefect API boots, say).

        The first job to take it is told it loaded it, and how long that took, so records read as if
        it had; a load that fails is left for that job to try again and record.
        """
        key = (job.pipeline_key, device)
        if key in self._pipes:
            return
        try:
            self._ahead[key] = self.get(job, device, run_id="preload")[2]
        except Exception:  # noqa: BLE001 - the job's own load says why
            self._failed.pop(key, None)

    def clear(self) -> None:
        """Free every pipeline (a fresh start, as in a new worker)."""
        devices = {device for _, device in self._pipes}
        self._pipes.clear()
        self._ahead.clear()
        for device in devices or {"cpu"}:
            free_memory(device)

    @property
    def loaded(self) -> list[tuple]:
        """The keys of the pipelines held now, least recently used first."""
        return list(self._pipes)

    def _make_room(self, needed: int | None, device: str) -> None:
        def too_full() -> bool:
            if self.capacity is not None and len(self._pipes) >= self.capacity:
                return True
            return needed is None or free_bytes(device) < needed * self.headroom

        while self._pipes and too_full():
            evicted, _ = self._pipes.popitem(last=False)
            self._ahead.pop(evicted, None)
            free_memory(device)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's torch modules (parameters and buffers)."""
    import torch

    modules = [part for part in pipe.components.values() if isinstance(part, torch.nn.Module)]
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def weights_bytes(job: Job) -> int | None:
    """The size of the weight files a job's pipeline would load, where they are on disk; None if unknown."""
    folder = Path(job.model_id)
    if not folder.is_absolute():  # a hub id: its snapshot in the local cache, if there is one
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(job.model_id, revision=job.load_options.revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached (or offline): no estimate
            return None
    marker = f".{job.variant}." if job.variant else None
    weights = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()]
    chosen = [p for p in weights if (marker in p.name) == bool(marker)] if marker else [
        p for p in weights if p.name.count(".") == 1
    ]
    return sum(p.stat().st_size for p in chosen or weights) or None


def free_bytes(device: str) -> int:
    """Free memory where pipelines live: the GPU's, or the host's available RAM."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    import psutil

    return psutil.virtual_memory().available


def free_memory(device: str) -> None:
    """Give back what freed pipelines and frames held: Python's garbage, and the CUDA cache."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


_CACHE = PipelineCache()


def pipeline_cache() -> PipelineCache:
    """This process's pipeline cache."""
    return _CACHE


def warm_up(jobs: Sequence[Job] = (), device: str | None = None) -> None:
    """Do now what the first job would otherwise wait for: import torch and diffusers (seconds), the pipeline
    classes of ``jobs`` (diffusers imports each on first use: most of a small pipeline's load), and read this
    process's provenance (``git status`` of the checkout). While the Prefect API boots, or on a fresh worker.

    With ``device`` (the jobs render in this process), the first job's pipeline is loaded too (:meth:`PipelineCache.preload`).
    """
    import diffusers
    import torch  # noqa: F401
    import transformers  # noqa: F401

    for name in dict.fromkeys(family_spec(job.family).pipeline_class for job in jobs):
        getattr(diffusers, name, None)  # a class diffusers lacks is the load's to report
    environment()
    if device is not None and jobs:
        pipeline_cache().preload(jobs[0], device)
