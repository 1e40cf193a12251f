"""The keys every row may carry, whatever its model (:class:`JobOptions`), and the per-job check of its seed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model

from ..pipeline_options import PipelineOptions
from .messages import _pydantic_problem


class JobOptions(PipelineOptions):
    """The keys every row may carry, whatever its model: which weights, how loaded, which seed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="a short key (see `videosweep models`), a hub repo id or a local pipeline folder")
    id: str | None = Field(
        None, pattern=r"^[\w.-]+$", description="names this row's videos, so a later row can take them: `video: '@name'`"
    )
    family: str | None = Field(None, description="the model family, where the model's own files cannot tell")
    pipeline: str | None = Field(
        None,
        description="a diffusers video pipeline class: a family's (picks it), or any other, its parameters read from its call",
    )
    revision: str | None = Field(None, description="hub branch, tag or commit of the weights")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="weights and compute precision; auto: the family's documented half precision on a GPU, float32 on a CPU"
    )
    variant: str = Field("auto", description="weight files to read: auto (fp16 with float16), none, or a variant name")
    seed: int = Field(
        ge=0, le=2**63 - 1, description="seed of the job's torch.Generator: `seed:` in a row, or `seeds: [...]`"
    )
    generator_device: Literal["cpu", "cuda"] = Field(
        "cpu", description="where the initial noise is drawn; cpu makes a seed mean the same video on any device"
    )


#: The seed alone, validated exactly as JobOptions validates it: the one key of JobOptions that differs per job.
_Seed = create_model("_Seed", __config__=JobOptions.model_config, seed=(int, JobOptions.model_fields["seed"]))
_OPTION_KEYS = frozenset(JobOptions.model_fields) - {"seed"}
_OPTION_ORDER = {key: position for position, key in enumerate(JobOptions.model_fields)}


def _check_seed(values: dict[Any, Any]) -> tuple[int | None, list[tuple[int, Any, str]]]:
    """The row's seed, validated as JobOptions validates it (a plain int in range needs no pydantic)."""
    seed = values.get("seed")
    if type(seed) is int and 0 <= seed <= 2**63 - 1:
        return seed, []
    try:
        return _Seed.model_validate({"seed": seed} if "seed" in values else {}).seed, []
    except ValidationError as exc:
        position = _OPTION_ORDER["seed"]
        return None, [(position, *_pydantic_problem(error, JobOptions)) for error in exc.errors()]
