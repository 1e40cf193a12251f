"""What the names in a row point to: its model (a tiny one built first), its separately stored parts, and the
pinned revision of each (a hub call, or a folder's content hash), each worked out once per name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..models import HUB_ID, ModelError, ModelRef, ensure_built, resolve, resolve_revision, source_revision
from ..models.base import input_fields
from ..pipeline_options import PipelineOptions
from .job_options import JobOptions
from .messages import SHOWN_CHARS, _cut, _shown


@dataclass
class _Model:
    """What the checks need of a model, worked out once per model."""

    ref: ModelRef
    params_cls: type[BaseModel]
    component_keys: list[str]
    allowed: list[str]
    inputs: dict[str, str]  # input field -> "image" or "video"
    is_local: bool


class _Resolver:
    """Resolves a row checker's names against ``base_dir`` (the manifest's folder), caching each answer."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._models: dict[tuple[str, str | None, str | None], _Model | ModelError] = {}
        self._revisions: dict[tuple[ModelRef | str, str | None], str] = {}

    def model(self, key: tuple[str, str | None, str | None]) -> _Model | ModelError:
        """What the checks need of the model ``key`` (name, family, pipeline) names; its ModelError (returned, not
        raised) if none."""
        if key not in self._models:
            name, family, pipeline = key
            try:
                if len(name) > 4096:  # longer than any path: no key, hub id or folder
                    raise ModelError(f"unknown model {_shown(name)}: {len(name):,} characters, longer than any path")
                ref = resolve(name, family, self.base_dir, pipeline)
                if ref.tiny:  # built first: its component folders are checked below
                    ensure_built(ref)
            except ModelError as exc:  # its message quotes the name and family whole: shortened here
                message = str(exc)
                for given in (name, family, pipeline):
                    if given is not None and len(repr(given)) > SHOWN_CHARS:
                        message = message.replace(repr(given), _shown(given))
                self._models[key] = ModelError(message)
            except (OSError, ValueError) as exc:  # a name the file system refuses (too long, a NUL byte)
                self._models[key] = ModelError(f"cannot use model {_shown(name)}: {_cut(str(exc))}")
            else:
                params_cls = ref.spec.params
                component_keys = list(ref.spec.components)
                tuning = list(PipelineOptions.model_fields)
                row_keys = [field for field in JobOptions.model_fields if field not in tuning]
                allowed = row_keys + component_keys + list(params_cls.model_fields) + tuning
                inputs = input_fields(params_cls)
                self._models[key] = _Model(ref, params_cls, component_keys, allowed, inputs, ref.is_local)
        return self._models[key]

    def components(self, model: _Model, given: dict[str, Any]) -> tuple[dict[str, str], list[tuple[Any, str]]]:
        """The model's separately stored parts, the row's (``given``) else its key's: name -> folder or hub id, and
        a problem for each that is neither."""
        components, trouble = {}, []
        defaults = dict(model.ref.components)
        for key in model.component_keys:
            value = given.get(key, defaults.get(key))
            source = self._source(value) if isinstance(value, str) else None
            if source is None:
                described = model.ref.spec.components[key].description
                trouble.append((key, f"{key}={_shown(value)}: give a hub repo id or a folder holding the {described}"))
            else:
                components[key] = source
        return components, trouble

    def revision(self, ref: ModelRef | str, revision: str | None) -> str:
        """The pinned revision of a model (tiny ones built first) or of a component's source."""
        key = (ref, revision)
        if key not in self._revisions:
            self._revisions[key] = (
                resolve_revision(ref, revision) if isinstance(ref, ModelRef) else source_revision(ref, revision)
            )
        return self._revisions[key]

    def _source(self, value: str) -> str | None:
        """A component's folder (absolute) or hub repo id; None if it is neither."""
        try:
            folder = Path(value).expanduser()
            folder = folder if folder.is_absolute() else self.base_dir / folder
            if folder.is_dir():
                return str(folder.resolve())
        except (OSError, ValueError):  # a name the file system refuses
            return None
        return value if HUB_ID.match(value) else None
