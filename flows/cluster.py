"""Where the render tasks run: this process, a local Dask cluster (one worker per GPU or slot), or an
existing Dask scheduler. Dask executes; Prefect orchestrates; nothing here schedules jobs itself.
"""

from __future__ import annotations

import importlib.util
import os

from videosweep.tasks.errors import InputError


def worker_count(workers: int | None, device: str) -> int:
    """``--workers``, else one per visible GPU (one on a CPU)."""
    if workers is not None:
        if workers < 1:
            raise InputError(f"--workers {workers}: need at least 1")
        return workers
    if device.startswith("cuda"):
        import torch

        return torch.cuda.device_count() if device == "cuda" else 1
    return 1


#: Seconds to wait for a Dask scheduler given with --dask-address to take a connection.
CONNECT_TIMEOUT_S = 5.0
DASK_PORT = 8786  # a Dask scheduler's default port


def check_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """InputError, naming ``address`` and what to do, unless something takes a connection there.

    Checked before Prefect or a Dask client starts (a client retries for 30 s, then prints a
    long traceback). Only ``tcp://`` and ``tls://`` addresses (or a bare ``host:port``) are
    checked here; another transport is left to Dask.
    """
    import socket

    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp", "tls"):
        return
    host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", str(DASK_PORT))
    host = host.strip("[]")  # an IPv6 address is written [::1]:8786
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"--dask-address {address}: not an address of a Dask scheduler; give tcp://HOST:PORT")
    try:
        socket.create_connection((host, int(port_text)), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise InputError(
            f"--dask-address {address}: no Dask scheduler answers there ({reason}); start one there "
            "(`dask scheduler`, then its workers) or fix the address, or leave --dask-address out to render here"
        ) from None


def dask_runner(workers: int, address: str | None, device: str):
    """A prefect-dask task runner for ``workers`` slots (or the cluster at ``address``); None for this process only.

    Each worker process runs one render at a time (one thread, a ``GPU`` resource of 1); on GPUs,
    dask-cuda's LocalCUDACluster pins each worker to its own GPU with CUDA_VISIBLE_DEVICES.
    """
    if workers == 1 and not address:
        return None
    import dask
    from prefect_dask import DaskTaskRunner

    # Dask's default MALLOC_TRIM_THRESHOLD_ for worker processes turns off glibc's adaptive mmap
    # threshold, so every large tensor is mmapped and unmapped again: renders ran 2.5x slower.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    if address:
        return DaskTaskRunner(address=address)
    from . import process

    slots = {"n_workers": workers, "threads_per_worker": 1, "resources": {"GPU": 1}, "dashboard_address": None,
             # its workers leave Ctrl-C to the run (tasks.children.dask_setup) and log to the run's log file
             "preload": ["videosweep.tasks.children", "videosweep.flows.process"], **process.dask_logging()}
    if device.startswith("cuda"):
        if importlib.util.find_spec("dask_cuda") is None:
            raise InputError(
                f"{workers} GPU workers need dask-cuda to pin each to its GPU: pip install 'videosweep[gpu]'"
            )
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = {"CUDA_VISIBLE_DEVICES": visible} if visible else {}
        return DaskTaskRunner(cluster_class="dask_cuda.LocalCUDACluster", cluster_kwargs={**slots, **gpus})
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={**slots, "processes": True})


def share_prefect_api() -> None:
    """Give Dask workers this run's Prefect API.

    Left alone in ephemeral mode, every worker process starts a throwaway API server of its own
    (seconds each, some left running at exit). Starting the ephemeral server here, before the
    cluster, and exporting its URL makes the workers, which inherit the environment, use it.
    """
    from .api_server import start_prefect_api

    start_prefect_api()()
