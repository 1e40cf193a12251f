"""``models``: the model keys, and every parameter a row may set, read from the pydantic models themselves."""

from __future__ import annotations

from rich.table import Table

from .arguments import out


def models() -> None:
    """List the model keys, families and each family's parameters (type, default, range), and the diffusers
    releases a family works with where it states them."""
    from videosweep.tasks.manifest import JobOptions
    from videosweep.tasks.models import FAMILIES, installed_diffusers, known_models
    from videosweep.tasks.pipeline_options import PipelineOptions

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
        listing.add_row(name, annotation, default, ", ".join(bounds), field.description or "")
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
