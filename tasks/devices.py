"""Which device renders, and the dtype that follows from it when a manifest says ``auto``."""

from __future__ import annotations

import re

from .errors import InputError

DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def resolve_device(device: str | None) -> str:
    """``None`` means the first GPU if there is one, else the CPU."""
    if device is None:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if not DEVICE.match(device):
        raise InputError(f"device {device!r} is not one of cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
    return device


def auto_dtype(device: str, gpu_dtype: str = "float16") -> str:
    """The docs' choice: half precision on a GPU (the family's documented one), full precision on a CPU."""
    return gpu_dtype if device.startswith("cuda") else "float32"
