"""The model registry: short names -> (family, hub id or local folder), and family name -> :class:`Family`.

Every module of this package but ``base``, ``family`` and the private ones is a family: found at
import, and refused there unless it declares ``FAMILY = Family(...)`` (the contract,
``family.py``), so adding a family touches its own module only. A manifest's ``model`` is one of
- a short key (``svd-xt``) from a family's ``MODELS`` table,
- ``tiny-<family>``: a random-weight checkpoint this project builds and caches on first use,
- a hub repo id (``org/name``) or a local folder holding a diffusers pipeline; the family is
  read from ``model_index.json`` where it is on disk, else given as ``family:``.

A row's ``pipeline:`` names a diffusers class instead of a family: a curated family's (the
family whose ``pipeline_class`` it is; a model key of a family on the same checkpoint may then
be loaded with it, as ``animatediff-v1-5-2`` with ``AnimateDiffVideoToVideoPipeline``), or any
other video pipeline, whose family is built from its call signature (``by_class``) and named by
the class. :func:`family_spec` finds either.

A family whose pipeline is assembled from separate repos (a motion adapter, a ControlNet)
names them in its ``components``; a model key gives their defaults and a row may override them.

A family that states the diffusers releases it works with (``Family.diffusers``: the deprecated
ones, whose pipelines a release may drop) is listed whatever diffusers is installed, but
:func:`resolve` refuses its rows outside that range, naming the fix; other families are unaffected.
Nothing here imports diffusers: family modules import their pipeline classes when they load one.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import pkgutil
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .base import scalar_type
from .family import Family, FamilyError

NOT_FAMILIES = ("base", "family", "by_class")


def discover(path: list[str], package: str) -> dict[str, Family]:
    """Import every family module of ``package`` (at ``path``) and check it against the contract.

    A module that fails the contract raises :class:`FamilyError` naming the module and what it
    lacks: a bug in that module, so it stops every command rather than hiding one family.
    """
    families: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda info: info.name):
        if info.name in NOT_FAMILIES or info.name.startswith("_"):
            continue
        where = f"{package}.{info.name}"
        try:
            module = importlib.import_module(where)
        except FamilyError as exc:
            raise FamilyError(f"{where}: {exc}") from None
        declared = module.__dict__.get("FAMILY")
        if not isinstance(declared, Family):
            raise FamilyError(
                f"{where} is not a family: it declares no FAMILY = Family(...) (tasks/models/family.py); "
                "a helper module's name starts with _"
            )
        if declared.name in families:
            raise FamilyError(f"{where}: family name {declared.name!r} is taken by another module")
        families[declared.name] = declared
    types: dict[str, tuple[type, str]] = {}  # parameter -> (its type, the first family that has it)
    for family in families.values():
        if family.tiny_base is not None and family.tiny_base not in families:
            raise FamilyError(f"family {family.name!r}: tiny_base names {family.tiny_base!r}, which is no family")
        for name, field in family.params.model_fields.items():
            kind, first = types.setdefault(name, (scalar_type(field.annotation), family.name))
            if kind is not scalar_type(field.annotation):
                raise FamilyError(
                    f"parameter {name!r} is {scalar_type(field.annotation).__name__} in family {family.name!r} but "
                    f"{kind.__name__} in {first!r}: one results column holds both; give it one type or another name"
                )
    return dict(sorted(families.items()))


FAMILIES: dict[str, Family] = discover(__path__, __name__)
#: For telling a folder's family from its model_index.json; a family may prefer another
#: family's pipeline (an image-to-video variant of the same repo) only by an explicit ``family:``.
FAMILY_OF_PIPELINE = {spec.pipeline_class: name for name, spec in reversed(FAMILIES.items())}

#: Bump when a family's ``build_tiny`` changes, so cached tiny checkpoints are rebuilt.
TINY_VERSION = 3
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT = re.compile(r"[0-9a-f]{40}")


class ModelError(InputError):
    """A model name that cannot be resolved; the message says what would work."""


@dataclass(frozen=True)
class ModelRef:
    name: str  # as the manifest wrote it
    family: str
    source: str  # hub repo id, or an absolute local folder
    tiny: bool = False
    components: tuple[tuple[str, str], ...] = ()  # (name, hub id or folder): a key's defaults
    variant: str = "auto"  # the weight files a row with `variant: auto` reads ("none": a repo without fp16 files)
    gpu_dtype: str | None = None  # what `dtype: auto` means on a GPU, where the docs name one for this checkpoint

    @property
    def is_local(self) -> bool:
        return is_local(self.source)

    @property
    def spec(self) -> Family:
        """The family's declaration."""
        return family_spec(self.family)


def family_spec(family: str) -> Family:
    """The :class:`Family` named ``family``: a curated one, or a video pipeline's by its class name (``by_class``)."""
    if family in FAMILIES:
        return FAMILIES[family]
    from . import by_class

    try:
        return by_class.family(family)
    except by_class.NotAVideoPipeline as exc:
        raise ModelError(f"unknown family {family!r}: {exc}") from None


def is_local(source: str) -> bool:
    """Sources are hub repo ids or absolute folders (relative ones are resolved on reading)."""
    return Path(source).is_absolute()


def _model_ref(key: str, family: str, entry: str | dict[str, str]) -> ModelRef:
    """A ``MODELS`` entry: a hub id, or ``{"source": id, "variant": "none", "dtype": "bfloat16", "<component>": id}``."""
    if isinstance(entry, str):
        return ModelRef(key, family, entry)
    settings = ("source", "variant", "dtype")
    components = tuple((name, value) for name, value in entry.items() if name not in settings)
    return ModelRef(
        key,
        family,
        entry["source"],
        components=components,
        variant=entry.get("variant", "auto"),
        gpu_dtype=entry.get("dtype"),
    )


def videosweep_home() -> Path:
    """Where built tiny checkpoints and file hashes are cached (``$VIDEOSWEEP_HOME``)."""
    return Path(os.environ.get("VIDEOSWEEP_HOME") or Path.home() / ".cache" / "videosweep")


def known_models() -> dict[str, ModelRef]:
    models = {
        key: _model_ref(key, family, entry) for family, spec in FAMILIES.items() for key, entry in spec.models.items()
    }
    for family, spec in FAMILIES.items():
        # A family may share another's tiny base checkpoint (an image-to-video pipeline of the same
        # repo, or the same SD 1.5 base under another adapter); its components are its own.
        components = tuple((name, str(tiny_folder(f"{family}-{name}"))) for name in spec.components)
        models[f"tiny-{family}"] = ModelRef(
            f"tiny-{family}", family, str(tiny_folder(spec.tiny_name)), tiny=True, components=components
        )
    return models


def tiny_folder(name: str) -> Path:
    return videosweep_home() / "tiny" / f"{name}-v{TINY_VERSION}"


@functools.cache
def installed_diffusers() -> str:
    """The installed diffusers release, read from its package metadata (importing diffusers takes seconds)."""
    return importlib.metadata.version("diffusers")


def diffusers_refusal(spec: Family) -> str | None:
    """Why rows of ``spec``'s family are refused with the installed diffusers; None where its range holds it."""
    installed = installed_diffusers()
    if spec.works_with(installed):
        return None
    why = " (its pipeline is deprecated upstream)" if spec.deprecated else ""
    return (
        f"family {spec.name!r} works with diffusers {spec.diffusers}{why}, but {installed} is installed: "
        f"pip install 'diffusers{spec.diffusers}', or use another family (videosweep models)"
    )


def resolve(name: str, family: str | None = None, base_dir: Path | None = None, pipeline: str | None = None) -> ModelRef:
    """Turn a manifest's ``model`` (and optional ``family`` or ``pipeline``) into a :class:`ModelRef`; refuse it where
    its family does not work with the installed diffusers (:func:`diffusers_refusal`)."""
    if pipeline is not None:
        family = _family_of_pipeline(pipeline, family)
    ref = _find(name, family, base_dir)
    refusal = diffusers_refusal(ref.spec)
    if refusal is not None:
        raise ModelError(f"model {name!r}: {refusal}")
    return ref


def _family_of_pipeline(pipeline: str, family: str | None) -> str:
    """The family a row's ``pipeline:`` class picks: the curated one rendering it, else the class's own (by_class)."""
    chosen = FAMILY_OF_PIPELINE.get(pipeline)
    if chosen is None:
        from . import by_class

        try:
            by_class.pipeline_class(pipeline)
        except by_class.NotAVideoPipeline as exc:
            raise ModelError(f"pipeline {pipeline!r}: {exc}") from None
        chosen = pipeline
    if family is not None and family != chosen:
        raise ModelError(f"pipeline {pipeline!r} is family {chosen!r}'s, not {family!r}: give `pipeline:` or `family:`, not both")
    return chosen


def _find(name: str, family: str | None, base_dir: Path | None) -> ModelRef:
    """The :class:`ModelRef` a model key, ``tiny-<family>``, local folder or hub id names."""
    if family is not None and family not in FAMILIES:
        if not family.endswith("Pipeline"):
            raise ModelError(f"unknown family {family!r}; known families: {', '.join(sorted(FAMILIES))}")
        family_spec(family)  # a video pipeline by its class name, or refused naming what would work
    models = known_models()
    if name in models:
        ref = models[name]
        if family is not None and family != ref.family:
            return _on_the_same_checkpoint(ref, family)
        return ref

    folder = Path(name).expanduser()
    if base_dir is not None and not folder.is_absolute():
        folder = base_dir / folder
    if folder.is_dir():
        return ModelRef(name, family or _family_from_index(folder / "model_index.json", name), str(folder.resolve()))

    if HUB_ID.match(name):
        if family is None:
            index = _cached_hub_file(name, "model_index.json")
            if index is None:
                raise ModelError(
                    f"cannot tell the family of {name!r} (its model_index.json is not in the local hub cache); "
                    f"add `family:` ({', '.join(sorted(FAMILIES))})"
                )
            family = _family_from_index(index, name)
        return ModelRef(name, family, name)

    close = difflib.get_close_matches(name, list(models), n=3)
    raise ModelError(
        f"unknown model {name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
        + f"; `videosweep models` lists the {len(models)} known models;"
        " or give a hub repo id (org/name) or a folder holding a diffusers pipeline"
    )


def _on_the_same_checkpoint(ref: ModelRef, family: str) -> ModelRef:
    """``ref``'s key loaded as another curated ``family`` whose pipeline reads the same checkpoint (one tiny base, the
    same separately stored parts), as ``animatediff-v1-5-2`` under ``AnimateDiffVideoToVideoPipeline``; else refused."""
    if family not in {other.name for other in on_the_same_checkpoint(ref.family)}:
        raise ModelError(f"model {ref.name!r} is of family {ref.family!r}, not {family!r}; drop `family:`")
    if ref.tiny:
        return known_models()[f"tiny-{family}"]
    return ModelRef(ref.name, family, ref.source, components=ref.components, variant=ref.variant, gpu_dtype=ref.gpu_dtype)


def on_the_same_checkpoint(family: str) -> list[Family]:
    """The other curated families whose pipelines read ``family``'s checkpoints: a row picks one with ``pipeline:``.

    One tiny base, and the same separately stored parts (same names and descriptions: PIA shares
    AnimateDiff's base but takes another kind of motion adapter, so it is not one of AnimateDiff's)."""
    spec = FAMILIES.get(family)
    if spec is None:
        return []

    def parts(one: Family) -> dict[str, str]:
        return {name: part.description for name, part in one.components.items()}

    return [
        other
        for other in FAMILIES.values()
        if other is not spec and other.tiny_name == spec.tiny_name and parts(other) == parts(spec)
    ]


def _family_from_index(index: Path, name: str) -> str:
    try:
        pipeline_class = json.loads(index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{name!r} has no readable model_index.json ({exc}); is it a diffusers pipeline folder?") from exc
    if pipeline_class in FAMILY_OF_PIPELINE:
        return FAMILY_OF_PIPELINE[pipeline_class]
    from . import by_class

    try:
        by_class.pipeline_class(pipeline_class)
    except by_class.NotAVideoPipeline as exc:
        raise ModelError(f"{name!r} holds a {pipeline_class}, which videosweep cannot render: {exc}") from None
    return pipeline_class  # a video pipeline without a curated family: by its class name


def _cached_hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def ensure_built(ref: ModelRef) -> None:
    """Build a tiny checkpoint (and its component repos) on first use."""
    if not ref.tiny:
        return
    _build_once(Path(ref.source), ref.spec.build_tiny)
    for name, folder in ref.components:
        _build_once(Path(folder), ref.spec.components[name].build_tiny)


def _build_once(target: Path, build) -> None:
    """Concurrent builders race safely: each builds aside, the first rename wins."""
    if target.is_dir() and any(target.iterdir()):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not (target.is_dir() and any(target.iterdir())):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def resolve_revision(ref: ModelRef, revision: str | None) -> str:
    """What pins the weights: a content hash of a local folder, else the hub commit.

    The commit is what ``from_pretrained`` would fetch now: the hub's answer when it can be
    asked (not ``HF_HUB_OFFLINE``), else the local cache's. Jobs load that exact commit, so the
    job id and the pixels agree. Neither known (offline, not cached: the load will fail too)
    keeps the requested ref, marked ``unresolved:``.
    """
    ensure_built(ref)
    return source_revision(ref.source, revision)


def source_revision(source: str, revision: str | None = None) -> str:
    """:func:`resolve_revision` for one repo or folder (a pipeline, or a component of one)."""
    if is_local(source):
        return "sha256:" + folder_sha256(Path(source))
    if revision and COMMIT.fullmatch(revision):
        return revision
    return _hub_commit(source, revision) or _cached_commit(source, revision) or f"unresolved:{revision or 'main'}"


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        return HfApi().model_info(repo_id, revision=revision, timeout=10).sha
    except Exception:  # noqa: BLE001 - no network, no such repo, gated: fall back to the cache
        return None


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    from huggingface_hub.constants import HF_HUB_CACHE

    ref_file = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref_file.read_text().strip()
    except OSError:
        return None


def folder_sha256(folder: Path) -> str:
    """A content hash of every file under ``folder`` (paths and bytes), cached by size and mtime."""
    cache_file = videosweep_home() / "file-hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    digest = hashlib.sha256()
    changed = False
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = file_sha256(path)
            changed = True
        digest.update(f"{path.relative_to(folder).as_posix()}\0{cache[key]}\n".encode())
    if changed:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        scratch = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        scratch.write_text(json.dumps(cache))
        os.replace(scratch, cache_file)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
