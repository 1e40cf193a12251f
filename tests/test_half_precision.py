"""Tiny folders that load as the docs load them (issue 14), and every family's contract test.

Every tiny folder loads with the docs' own ``Pipeline.from_pretrained(folder)`` in float32 (no
part in half precision beside a float32 UNet), and with ``torch_dtype=torch.float16,
variant="fp16"`` in float16. Rendering in float16 and bfloat16 on the CPU is part of each
family's contract (``FamilyContract.test_renders_in_half_precision_on_the_cpu``), so every family
must have its contract test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from videosweep.tasks.models import FAMILIES, ensure_built, known_models

from .family_contract import wrong_dtypes

#: A separately stored part of a family (``components``): the pipeline argument and the class the docs load it with.
COMPONENT_LOADERS = {
    "adapter": ("motion_adapter", "MotionAdapter"),
    "controlnet": ("controlnet", "ControlNetModel"),
    "vae": ("vae", "AutoencoderKL"),
}
TINY_MODELS = sorted(name for name, ref in known_models().items() if ref.tiny)


def test_every_family_has_its_contract_test():
    """A FamilyContract subclass per family (``family = "<name>"`` in a test module), which also renders it in half precision."""
    declared = []
    for module in sorted(Path(__file__).parent.glob("test_*.py")):
        text = module.read_text()
        for body in re.split(r"^class ", text, flags=re.M)[1:]:
            if body.split(":", 1)[0].endswith("(FamilyContract)"):
                declared += re.findall(r'^    family = "([^"]+)"$', body, flags=re.M)
    assert sorted(declared) == sorted(FAMILIES)


def docs_load(name: str, **dtype_kwargs):
    """``Pipeline.from_pretrained(folder, <separate parts>, **dtype_kwargs)``, as the docs write it."""
    import diffusers

    ref = known_models()[name]
    ensure_built(ref)
    cls = getattr(diffusers, ref.spec.pipeline_class)
    parts = {}
    for component, folder in ref.components:
        argument, part_class = COMPONENT_LOADERS[component]
        # the docs load adapters and ControlNets without a weight variant, in the pipeline's dtype
        dtype = {"torch_dtype": dtype_kwargs["torch_dtype"]} if "torch_dtype" in dtype_kwargs else {}
        parts[argument] = getattr(diffusers, part_class).from_pretrained(folder, **dtype)
    # parts a folder saves as [null, null] (no safety checker) are passed as None, as the docs' repos need none
    index = json.loads((Path(ref.source) / "model_index.json").read_text())
    parts.update({part: None for part, entry in index.items() if entry == [None, None]})
    return cls.from_pretrained(ref.source, **dtype_kwargs, **parts)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_folder_loads_in_float32_with_the_docs_plain_call(name):
    pipe = docs_load(name)
    assert not wrong_dtypes(pipe, torch.float32)
    assert list(Path(known_models()[name].source).rglob("*.fp16.safetensors")), "the fp16 variant is still there"


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_folder_loads_in_float16_with_the_docs_fp16_call(name):
    pipe = docs_load(name, torch_dtype=torch.float16, variant="fp16")
    assert not wrong_dtypes(pipe, torch.float16)
