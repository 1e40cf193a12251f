"""``models``: the model keys, and every parameter a row may set, read from the pydantic models themselves."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .arguments import out, refuse


def models(
    pipeline: Annotated[
        Optional[str],
        typer.Option("--pipeline", help="one diffusers video pipeline class: the parameters a row may give it by class name"),
    ] = None,
) -> None:
    """List the model keys, families and each family's parameters (type, default, range), the diffusers
    releases a family works with where it states them, and the other video pipelines a row may name by class."""
    from videosweep.tasks.manifest import JobOptions
    from videosweep.tasks.models import FAMILIES, installed_diffusers, known_models
    from videosweep.tasks.pipeline_options import PipelineOptions

    if pipeline is not None:
        _by_class(pipeline)
        return

    listing = Table(title="models", title_justify="left")
    for column in ("key", "family", "weights"):
        listing.add_column(column)
    for key, ref in sorted(known_models().items()):
        parts = [ref.source] + [f"{name}: {source}" for name, source in ref.components]
        listing.add_row(key, ref.family, "\n".join(parts))
    out.print(listing)
    out.print("or any hub repo id / local pipeline folder (add `family:` where it cannot be read from the files)\n")
    _print_params("keys of every row", JobOptions, skip=PipelineOptions.model_fields)
    _print_params("pipeline options of every row (memory, speed, scheduler)", PipelineOptions)
    for family, spec in FAMILIES.items():
        title = f"{family} ({spec.pipeline_class}): {spec.description}"
        if spec.diffusers is not None:
            title += f"; works with diffusers {spec.diffusers}"
            if not spec.works_with(installed_diffusers()):
                title += f", not the installed {installed_diffusers()}: its rows are refused"
        extra = {name: f"hub id or folder: {part.description}" for name, part in spec.components.items()}
        _print_params(title, spec.params, extra=extra)
    _list_by_class(FAMILIES)


def _list_by_class(families) -> None:
    """The video pipelines of the installed diffusers that no family curates: a row names one with ``pipeline:``."""
    from videosweep.tasks.models import by_class

    curated = {spec.pipeline_class for spec in families.values()}
    listing = Table(title="by class name: any other video pipeline of diffusers", title_justify="left")
    for column in ("pipeline", "what it is"):
        listing.add_column(column)
    for name, description in sorted(by_class.video_pipelines().items()):
        if name not in curated:
            listing.add_row(name, escape(description))
    out.print(listing)
    out.print(
        "a row names one with `pipeline: <class>` and a hub id or local folder as `model` (a folder whose "
        "model_index.json names it needs no `pipeline:`); its parameters are its call's: "
        "`videosweep models --pipeline <class>` lists them\n"
    )


def _by_class(name: str) -> None:
    """The parameters a row may give the pipeline ``name``: a curated family's, or those read from its call."""
    from videosweep.tasks.models import FAMILY_OF_PIPELINE, by_class, family_spec

    if name in FAMILY_OF_PIPELINE:
        spec = family_spec(FAMILY_OF_PIPELINE[name])
        _print_params(f"{name}: family {spec.name} ({spec.description})", spec.params)
        return
    try:
        cls = by_class.pipeline_class(name)
    except by_class.NotAVideoPipeline as exc:
        refuse(str(exc))
    spec = family_spec(name)
    _print_params(f"{spec.description} (`pipeline: {name}`, its call's parameters and defaults)", spec.params)
    left_out = Table(title=f"what {name} takes that a row cannot give", title_justify="left")
    for column in ("parameter", "why"):
        left_out.add_column(column)
    for parameter, why in by_class.read_call(cls)[2].items():
        left_out.add_row(parameter, escape(why))
    out.print(left_out)


def _print_params(title: str, model, skip=(), extra: dict[str, str] | None = None) -> None:
    listing = Table(title=title, title_justify="left")
    for column in ("key", "type", "default", "allowed", "meaning"):
        listing.add_column(column)
    for name, meaning in (extra or {}).items():
        listing.add_row(name, "str", "the model key's", "", meaning)
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        bounds = [
            f"{label} {getattr(rule, attr)}"
            for rule in field.metadata
            for attr, label in (("ge", ">="), ("le", "<="), ("multiple_of", "multiple of"))
            if getattr(rule, attr, None) is not None
        ]
        annotation = _type_name(field.annotation)
        default = "required" if field.is_required() else repr(field.default)
        listing.add_row(name, escape(annotation), escape(default), ", ".join(bounds), escape(field.description or ""))
    out.print(listing)


def _type_name(annotation) -> str:
    """A field's type as a person reads it: ``bool | int | {chunk_size, dim}``, ``default | reduce-overhead``."""
    import types
    import typing

    import pydantic

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is dict and len(args) == 2:
        return f"{{{_type_name(args[0])}: {_type_name(args[1])}}}"
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
