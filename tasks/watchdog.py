"""Cancel a render that makes no progress: no torch module has run a forward pass for ``timeout`` seconds.

Progress is seen through a global forward pre-hook (a denoiser step, a text encoder or VAE call,
any module's forward ticks it), so it works for every family without touching their code; the
hook is armed again after each tick at the watcher's next look, so most calls run without it. A stalled job is
cancelled by raising :class:`JobHung` in its thread, which takes effect at its next Python
step: a hang inside one native call (a deadlocked kernel) ends only when that call returns,
so such a worker is better killed; on Dask, its jobs then go to the other workers.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


#: Seconds a job may go without progress before it is cancelled (first compiles take minutes).
DEFAULT_HANG_TIMEOUT_S = 1800.0


class JobHung(RuntimeError):
    """Raised in a render thread that made no progress for longer than the hang timeout."""


@contextmanager
def watchdog(timeout: float | None, poll: float = 1.0) -> Iterator[None]:
    """Within this block, raise :class:`JobHung` in this thread after ``timeout`` seconds without a forward pass."""
    if not timeout:
        yield
        return
    import torch

    target = threading.get_ident()
    done = threading.Event()
    fired = threading.Event()
    ticked = threading.Event()  # a forward pass ran in this thread since the hook was last armed
    handles = []

    def arm() -> None:
        """Hook the next forward pass of any module in this thread: it disarms the hook and ticks.

        Armed once per look of the watcher rather than for the whole block, so that the thousands of
        module calls in between take torch's hook-free path (measured: a global hook costs 8 % of a
        tiny SVD's video).
        """

        def tick(module, args) -> None:
            if threading.get_ident() == target:
                handle.remove()  # before the tick: the watcher arms a new hook only once it sees it
                ticked.set()

        handle = torch.nn.modules.module.register_module_forward_pre_hook(tick)
        handles.append(handle)

    def watch() -> None:
        last = time.monotonic()
        while not done.wait(min(poll, timeout / 4)):
            if ticked.is_set():
                last = time.monotonic()
                ticked.clear()
                handles.clear()  # removed by their tick
                arm()
            elif time.monotonic() - last > timeout:
                fired.set()
                _raise_in(target, JobHung)
                return

    arm()
    watcher = threading.Thread(target=watch, name="videosweep-watchdog", daemon=True)
    watcher.start()
    try:
        yield
    except JobHung:
        raise JobHung(f"no progress for {timeout:g} s (no forward pass of any model part): cancelled") from None
    finally:
        done.set()
        watcher.join()
        for handle in handles:
            handle.remove()
        if fired.is_set():
            _raise_in(target, None)  # not delivered yet (the block ended first): withdraw it


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )
