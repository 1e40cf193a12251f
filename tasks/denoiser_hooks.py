"""Hooks on a pipeline's denoiser that trade exactness for time, attached for one job and removed after.

- :class:`GuidanceCutoff` (``guidance_cutoff``): past a fraction of the schedule, the conditional
  half of classifier-free guidance's batch only;
- :class:`DeepCache` (``step_cache: {type: deep_cache}``): a UNet's deep blocks computed every
  few calls only, their outputs reused in between (Ma et al., "DeepCache", CVPR 2024).

Both work on the denoiser module itself, through PyTorch's module hooks and per-instance
``forward`` overrides, so a pipeline's own loop runs unchanged.
"""

from __future__ import annotations

from typing import Any

#: Denoiser arguments that may hold the batch's rows repeated, halves kept: AnimateDiff repeats each
#: prompt embedding once per frame ([uncond x frames, cond x frames]).
REPEATED_ROWS = ("encoder_hidden_states",)


def detach_all(denoiser: Any) -> None:
    """Remove what an earlier job attached to ``denoiser``."""
    for undo in getattr(denoiser, "_videosweep_hooks", ()):
        undo()
    denoiser._videosweep_hooks = []


def _on_detach(denoiser: Any, undo: Any) -> None:
    if not hasattr(denoiser, "_videosweep_hooks"):
        denoiser._videosweep_hooks = []
    denoiser._videosweep_hooks.append(undo)


def _sample_and_timestep(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
    return sample, args[1] if len(args) > 1 else kwargs.get("timestep")


class GuidanceCutoff:
    """Past ``cutoff`` of the schedule, feed the denoiser the conditional half of each guided batch only.

    The output is the conditional prediction twice, so the pipeline's guidance step
    ``uncond + scale * (cond - uncond)`` yields ``cond``: the same as a pipeline run without
    guidance from there on, at half the denoiser's work. Where a step stands is read from the
    timestep the denoiser gets, against the scheduler's schedule (after its ``begin_index``, so
    a video-to-video strength counts only the steps it runs).
    """

    def __init__(self, pipe: Any, cutoff: float) -> None:
        self.pipe = pipe
        self.cutoff = cutoff
        self.halved: int | None = None  # the full batch of the call in progress, when it was halved

    def attach(self, denoiser: Any) -> None:
        for handle in (
            denoiser.register_forward_pre_hook(self.before, with_kwargs=True),
            denoiser.register_forward_hook(self.after, with_kwargs=True),
        ):
            _on_detach(denoiser, handle.remove)

    def progress(self, timestep: Any) -> float:
        """How far into the schedule the denoiser is called, 0 (noisiest) to just under 1."""
        import torch

        scheduler = self.pipe.scheduler
        schedule = scheduler.timesteps.float().cpu()
        # the largest entry: image-to-video LTX zeroes the timestep of its conditioning frame's tokens
        current = torch.as_tensor(timestep).detach().float().max().cpu()
        index = int((schedule - current).abs().argmin())
        begin = getattr(scheduler, "begin_index", None) or 0
        return (index - begin) / max(len(schedule) - begin, 1)

    def before(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        import torch

        sample, timestep = _sample_and_timestep(args, kwargs)
        self.halved = None
        # outside a compiled denoiser's graph: reading the step back as a Python number would break it anyway
        if torch.compiler.disable(self.progress)(timestep) < self.cutoff:
            return None
        batch = sample.shape[0]
        if batch % 2:
            raise RuntimeError(f"guidance_cutoff: the denoiser got a batch of {batch}, not [unconditional, conditional] halves")
        self.halved = batch
        return _second_half(args, batch), _second_half(kwargs, batch)

    def after(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        import torch

        if self.halved is None:
            return None
        if isinstance(output, tuple):
            return (torch.cat([output[0], output[0]]), *output[1:])
        output.sample = torch.cat([output.sample, output.sample])
        return output


def _second_half(value: Any, batch: int, repeated: bool = False) -> Any:
    """``value`` with every tensor of ``batch`` rows (or a multiple, where ``repeated``) cut to its last half.

    Lists, tuples and dicts are cut item by item (ControlNet residuals, ``added_cond_kwargs``);
    other tensors (rotary embeddings, a scalar timestep) are left whole.
    """
    import torch

    if isinstance(value, torch.Tensor):
        rows = value.shape[0] if value.dim() else 0
        cut = rows == batch or (repeated and rows and rows % batch == 0)
        return value[rows // 2 :] if cut else value
    if isinstance(value, (list, tuple)):
        return type(value)(_second_half(item, batch) for item in value)
    if isinstance(value, dict):
        return {key: _second_half(item, batch, key in REPEATED_ROWS) for key, item in value.items()}
    return value


def has_unet_levels(denoiser: Any) -> bool:
    """Whether ``denoiser`` is a UNet of down, mid and up blocks (what DeepCache skips through)."""
    return all(hasattr(denoiser, name) for name in ("down_blocks", "mid_block", "up_blocks"))


class DeepCache:
    """Every ``interval``-th denoiser call runs the whole UNet and keeps its deep blocks' outputs; the calls
    between run only the outer ``depth`` levels (the first down blocks, the last up blocks, the
    convolutions in and out) on fresh inputs and take the deep blocks' outputs from that call.

    The outer up blocks still get fresh skip connections from the outer down blocks, which is what
    keeps the reused features aligned with the current step. A call whose batch or shape differs
    from the kept one (a guidance cutoff halving the batch, another video size) runs in full.
    """

    def __init__(self, interval: int, depth: int) -> None:
        self.interval = interval
        self.depth = depth
        self.calls = 0
        self.shape: tuple | None = None  # the sample shape the kept outputs belong to
        self.reuse = False  # whether the call in progress takes the kept outputs
        self.kept: dict[int, Any] = {}  # deep block's id -> its output in the last full call

    def attach(self, unet: Any) -> None:
        depth = min(self.depth, len(unet.down_blocks) - 1)
        deep = [*unet.down_blocks[depth:], unet.mid_block, *unet.up_blocks[: len(unet.up_blocks) - depth]]
        handle = unet.register_forward_pre_hook(self.before, with_kwargs=True)
        _on_detach(unet, handle.remove)
        for block in deep:
            if block is not None:
                block.forward = self._forward_of(block, block.forward)
                _on_detach(unet, lambda block=block: block.__dict__.pop("forward", None))

    def before(self, module: Any, args: tuple, kwargs: dict) -> None:
        sample, _ = _sample_and_timestep(args, kwargs)
        shape = tuple(sample.shape)
        self.reuse = self.calls % self.interval != 0 and shape == self.shape
        if not self.reuse:
            self.calls, self.shape = 0, shape  # a full call starts a new interval
        self.calls += 1

    def _forward_of(self, block: Any, forward: Any) -> Any:
        def cached_forward(*args: Any, **kwargs: Any) -> Any:
            if self.reuse:
                return self.kept[id(block)]
            self.kept[id(block)] = output = forward(*args, **kwargs)
            return output

        return cached_forward
