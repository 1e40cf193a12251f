"""A job: one video to render, fully resolved, with a content-addressed ``job_id``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import InputError
from .layout import job_frames_path, job_video_path
from .models import COMMIT, family_spec
from .models.base import LoadOptions
from .pipeline_options import load_options

#: Part of every job id: bump it when the meaning of a field that feeds the hash changes.
JOB_ID_SCHEME = 1


class Job(BaseModel):
    """One row of the expanded job table."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    index: int  # position in the expanded table
    origin: str  # where the manifest declared it: "rows[1]", "line 5"
    coords: dict[str, Any]  # the swept values (sweep, zip, seeds) that made this job
    model: str  # as written in the manifest
    family: str
    model_id: str  # hub repo id or absolute local folder
    requested_revision: str | None
    model_revision: str  # hub commit, or "sha256:..." of a local folder
    dtype: str
    variant: str | None
    generator_device: str
    seed: int
    params: dict[str, Any]  # the family's validated parameters, JSON-able (paths as strings)
    input_sha256: dict[str, str]  # input field -> sha256 of the file's bytes
    components: dict[str, str] = {}  # separately stored parts: name -> hub id or folder
    component_revisions: dict[str, str] = {}  # name -> hub commit or "sha256:" of the folder
    depends_on: list[str] = []  # job ids whose videos this job takes as input ("@<job_id>" values)
    options: dict[str, Any] = {}  # the pipeline options the row set (tasks.pipeline_options)
    parent_job_id: str | None = None  # the job `rerun --set` derived this one from (not part of the id)
    keep_frames: bool = False  # another job takes this one's video: its frames are kept losslessly too (not part of the id)

    @property
    def load_options(self) -> LoadOptions:
        """Loads the commits the job id was computed with, where they were resolved."""
        components = tuple(
            (name, source, _pinned(self.component_revisions[name], None)) for name, source in sorted(self.components.items())
        )
        return LoadOptions(
            self.model_id, _pinned(self.model_revision, self.requested_revision), self.dtype, self.variant, components
        )

    @property
    def pipeline_key(self) -> tuple:
        """Jobs with equal keys share one loaded pipeline."""
        return (self.family, self.model_revision, self.load_options, load_options(self.options))

    @property
    def batch_key(self) -> tuple | None:
        """Jobs with equal keys may share one pipeline call: all but the seed and the family's ``batch_fields`` alike.

        None where the family renders one video per call, or this row must (``Family.can_batch``).
        """
        spec = family_spec(self.family)
        if not spec.can_batch(self.params):
            return None
        shared = {key: value for key, value in self.params.items() if key not in spec.batch_fields}
        alike = json.dumps([self.generator_device, self.options, shared], sort_keys=True, default=str)
        return (self.pipeline_key, alike)

    def typed_params(self, out_root: Path | None = None, lossy: Collection[str] = ()):
        """The family's Params; ``"@<job_id>"`` inputs become that job's video under ``out_root`` (:func:`chain_input`:
        its lossless frames where kept, unless the source is in ``lossy``)."""
        params = dict(self.params)
        for key, value in params.items():
            if isinstance(value, str) and value.startswith("@"):
                if out_root is None:
                    raise InputError(f"{key}={value!r} names another job's video: give the output root")
                params[key] = str(out_root / chain_input(out_root, value[1:], value[1:] in lossy)[0])
        return family_spec(self.family).params(**params)

    def label(self) -> str:
        return describe(self.index, self.origin, self.coords)


def chain_input(out_root: Path, source: str, lossy: bool = False) -> tuple[str, bool]:
    """The file a chained job reads as the video of job ``source`` (relative to ``out_root``), and whether it is lossless.

    The source's lossless frames where they are kept, else (a source rendered before videosweep
    kept them, or ``lossy``: a rerun of a job that read the mp4) its H.264 mp4.
    """
    frames = job_frames_path(source)
    if not lossy and (out_root / frames).is_file():
        return frames, True
    return job_video_path(source), False


def _pinned(resolved: str, requested: str | None) -> str | None:
    return resolved if COMMIT.fullmatch(resolved) else requested


def describe(index: int, origin: str, coords: dict[str, Any]) -> str:
    """How messages and the progress bar name a job: its place in the manifest and its sweep values."""
    values = "".join(f", {key}={value}" for key, value in coords.items())
    return f"job {index} ({origin}{values})"


def compute_job_id(*, seed: int, params: dict[str, Any], input_sha256: dict[str, str], **fixed: Any) -> str:
    """A stable hash of everything that decides a video's pixels (``fixed``: :class:`JobIdMaker`'s fields).

    Input files count by content, not path, and a local checkpoint by its content hash, so a
    moved folder keeps its ids; the compute device counts only through the dtype it implies.
    ``components`` maps a part's name to (hub id or None for a folder, revision); ``options``
    holds the pipeline options that change pixels (a scheduler, FreeU...).
    """
    maker = JobIdMaker(**fixed)
    return maker.job_id(maker.params_part(params, input_sha256), seed)


def _canonical(value: Any) -> str:
    """The JSON text a job id hashes, for one value: sorted keys, no spaces, ``str()`` for what JSON lacks."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class JobIdMaker:
    """The job id formula (:func:`compute_job_id`), fast for jobs that share all but their seed, params and inputs.

    A job's id is the first 16 hex digits of the sha256 of its identity's canonical JSON
    (:func:`_canonical`): ``scheme``, ``family``, ``model`` (None for a local folder),
    ``revision``, ``dtype``, ``variant``, ``generator_device``, ``seed``, ``params`` (input files
    by their hash), and ``components`` and ``options`` where not empty (absent otherwise, so the
    ids of plain rows stay as they were). The fixed fields are encoded once; a job then costs one
    encoding of its params (shareable between jobs that differ only in their seed,
    :meth:`params_part`) and one sha256. The text is assembled in the order ``sort_keys`` gives
    (``params`` and ``seed`` sit between the fixed keys), so it is the identity's canonical JSON.
    """

    def __init__(
        self,
        *,
        family: str,
        model_id: str,
        model_revision: str,
        is_local: bool,
        dtype: str,
        variant: str | None,
        generator_device: str,
        components: dict[str, tuple[str | None, str]] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        fixed: dict[str, Any] = {
            "scheme": JOB_ID_SCHEME,
            "family": family,
            "model": None if is_local else model_id,
            "revision": model_revision,
            "dtype": dtype,
            "variant": variant,
            "generator_device": generator_device,
        }
        if components:
            fixed["components"] = components
        if options:
            fixed["options"] = options
        pieces: list[str] = []  # the text between the slots: before params, between params and seed, after seed
        text = "{"
        for index, key in enumerate(sorted([*fixed, "params", "seed"])):
            text += ("," if index else "") + _canonical(key) + ":"
            if key in ("params", "seed"):
                pieces.append(text)
                text = ""
            else:
                text += _canonical(fixed[key])
        pieces.append(text + "}")
        self._before_params, self._before_seed, self._after_seed = pieces

    @staticmethod
    def params_part(params: dict[str, Any], input_sha256: dict[str, str]) -> str:
        """The encoded params (input files by their hash): the same for every seed of a row."""
        return _canonical({key: input_sha256.get(key, value) for key, value in params.items()})

    def job_id(self, params_part: str, seed: int) -> str:
        seed_text = str(seed) if type(seed) is int else _canonical(seed)  # json writes an int as its str
        canonical = self._before_params + params_part + self._before_seed + seed_text + self._after_seed
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
