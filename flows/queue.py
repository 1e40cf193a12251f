"""Queued runs on a Prefect server: the deployment of prefect.yaml, its work pool and priority queues,
and submit / status / cancel / worker.

The deployment runs :func:`queued_manifest`, a flow around :func:`flows.render.run_manifest`, so a
queued run places its jobs as ``videosweep run`` does (one Dask worker per visible GPU, or
``workers``); the render flow itself is its subflow. Runs wait in the queues ``priority-1`` (first)
to ``priority-5`` of one process work pool; a worker takes the most urgent queue's oldest run as
soon as it has a free slot. Everything here talks to the API at ``PREFECT_API_URL``.

A queued run has one name, ``<manifest name>-<6 hex digits>`` (``tasks.submission.queued_run_name``):
the deployment's flow run has it, its render subflow takes it, and ``status``/``cancel`` accept it,
a prefix of the run's id, or the manifest's name where that names one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import flow
from prefect.states import Failed

from videosweep.tasks.errors import InputError
from videosweep.tasks.text import markdown_code_block
from videosweep.tasks.watchdog import DEFAULT_HANG_TIMEOUT_S

from .render import artifact_key, run_manifest

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

    from videosweep.tasks.submission import Progress
    from videosweep.tasks.summary import RunSummary

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"
PRIORITIES = range(1, 6)  # Prefect's order: 1 runs first
DEFAULT_PRIORITY = 3
JOBS_LABEL = "videosweep.jobs"  # a submitted run's job count, for status
MANIFEST_LABEL = "videosweep.manifest"  # its manifest's name, which status and cancel accept
SHOWN_RUNS = 10  # runs named in a message that asks to choose one


@flow(name="videosweep-queued", validate_parameters=False)
def queued_manifest(
    manifest: str,
    out: str,
    device: str | None = None,
    force: bool = False,
    workers: int | None = None,
    hang_timeout: float | None = DEFAULT_HANG_TIMEOUT_S,
    overlap_export: bool = True,
    batch: int = 1,
    limits: dict[str, int] | None = None,
) -> RunSummary:
    """Render a submitted manifest (its frozen copy) into ``out``, on this worker's GPUs, as `videosweep run` would.

    The render flow run is named as this one: a queued run has one name, in `videosweep status` and the Prefect UI.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    summary = run_manifest(
        manifest, out, device=device, force=force, workers=workers,
        hang_timeout=hang_timeout, overlap_export=overlap_export, batch=batch, limits=limits,
        run_name=FlowRunContext.get().flow_run.name.replace("{", "{{").replace("}", "}}"),  # Prefect formats it
    )
    key = f"{artifact_key(Path(out).name)}-run"  # one per output root: two manifests' summaries never share a key
    create_markdown_artifact(markdown_code_block(summary.format()), key=key, description="what the run did")
    if summary.failed:  # as the child run: a run with failed jobs does not end Completed
        return Failed(message=f"{summary.failed} of {summary.total} jobs failed", data=summary)
    return summary


@dataclass(frozen=True)
class DeploymentSpec:
    """The one deployment of prefect.yaml."""

    name: str
    entrypoint: str
    pool: str
    queue: str
    description: str

    def name_on(self, pool: str | None) -> str:
        """The deployment's name on ``pool``: prefect.yaml's on its own pool, suffixed with any other pool's."""
        return self.name if pool in (None, self.pool) else f"{self.name}-{pool}"


@cache
def deployment_spec() -> DeploymentSpec:
    import yaml

    entry = yaml.safe_load(PREFECT_YAML.read_text())["deployments"][0]
    pool = entry["work_pool"]
    return DeploymentSpec(
        entry["name"], entry["entrypoint"], pool["name"], pool["work_queue_name"], entry["description"]
    )


def server_url() -> str:
    """``PREFECT_API_URL``; InputError, saying what to do, if it is not set (checked before anything starts)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:  # an ephemeral API would vanish with this process, and the run with it
        raise InputError(
            "no Prefect server: start one (`prefect server start`) and set PREFECT_API_URL, "
            "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url


@contextmanager
def api_client() -> Iterator[SyncPrefectClient]:
    """A client of the Prefect server at ``PREFECT_API_URL``; InputError, saying what to do, if there is none."""
    from prefect.client.orchestration import get_client

    url = server_url()
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
        if problem is not None:
            raise InputError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({problem}); is it running?")
        yield client


def queue_name(priority: int) -> str:
    if priority not in PRIORITIES:
        raise InputError(f"--priority {priority}: use {PRIORITIES.start} (first) to {PRIORITIES.stop - 1} (last)")
    return f"priority-{priority}"


def ensure_deployment(client: SyncPrefectClient, pool: str | None = None) -> UUID:
    """Create what is missing of the work pool (``pool``, else prefect.yaml's), its queues and the deployment
    on it (updated to this code); its id. A deployment has one pool: each other pool gets its own."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    spec = deployment_spec()
    pool = pool or spec.pool
    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type=ProcessWorker.type, base_job_template=template))
        except ObjectAlreadyExists:  # a worker or another submit made it meanwhile
            pass
    existing = {queue.name for queue in client.read_work_queues(work_pool_name=pool)}
    # in ascending order: a queue created at priority N moves those at N or later one down, keeping their order
    for priority in PRIORITIES:
        if queue_name(priority) not in existing:
            try:
                client.create_work_queue(queue_name(priority), priority=priority, work_pool_name=pool)
            except ObjectAlreadyExists:
                pass
    flow_id = client.create_flow_from_name(queued_manifest.name)
    return client.create_deployment(  # an upsert: same flow and name, same deployment
        flow_id=flow_id,
        name=spec.name_on(pool),
        entrypoint=spec.entrypoint,
        work_pool_name=pool,
        work_queue_name=spec.queue,
        description=spec.description,
        pull_steps=[],
        parameter_openapi_schema=parameter_schema(queued_manifest).model_dump_for_openapi(),
        enforce_parameter_schema=False,
    )


def submit(
    client: SyncPrefectClient,
    manifest: Path,
    out: Path,
    jobs: int,
    at: datetime | None = None,
    priority: int = DEFAULT_PRIORITY,
    device: str | None = None,
    workers: int | None = None,
    force: bool = False,
    rendering: dict[str, Any] | None = None,
    pool: str | None = None,
    name: str | None = None,
) -> FlowRun:
    """Queue a run of ``manifest`` (a frozen copy) into ``out`` at ``at`` (now if None), on the work pool ``pool``
    (default: prefect.yaml's), for a worker serving that pool; ``name``: the manifest's (default: its file stem).

    ``rendering``: how its jobs render (``hang_timeout``, ``overlap_export``, ``batch``, ``limits``), as
    `videosweep run` takes them; the flow's defaults where left out.
    """
    from prefect.states import Scheduled

    from videosweep.tasks.submission import queued_run_name

    queue = queue_name(priority)
    name = name or Path(manifest).stem
    parameters = {"manifest": str(manifest), "out": str(out), "device": device, "force": force, "workers": workers}
    return client.create_flow_run_from_deployment(
        ensure_deployment(client, pool),
        parameters=parameters | (rendering or {}),
        state=Scheduled(scheduled_time=at or datetime.now(timezone.utc)),
        work_queue_name=queue,
        name=queued_run_name(name),
        labels={JOBS_LABEL: jobs, MANIFEST_LABEL: name},
    )


def submitted_runs(client: SyncPrefectClient, limit: int = 50) -> list[FlowRun]:
    """The runs of the deployments (one per work pool), latest first (none if nothing was ever submitted)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[queued_manifest.name])))
    if not deployments:
        return []
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[each.id for each in deployments])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit,
    )


def manifest_name(run: FlowRun) -> str:
    """The name of the manifest a submitted run renders (its file's stem for a run submitted without the label)."""
    return str(run.labels.get(MANIFEST_LABEL) or Path(run.parameters["manifest"]).stem)


def find_run(client: SyncPrefectClient, ref: str) -> FlowRun:
    """The submitted run ``ref`` names: its name, its manifest's name, or a prefix of its id, in that order.

    InputError if none does, or if ``ref`` names several (a manifest submitted twice): it lists them.
    """
    runs = submitted_runs(client, limit=200)
    for matches, what in (
        ([run for run in runs if run.name == ref], "name"),
        ([run for run in runs if manifest_name(run) == ref], "manifest name"),
        ([run for run in runs if str(run.id).startswith(ref.lower())], "id prefix"),
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            choices = "; ".join(
                f"{run.name} ({run.state_name}, {str(run.id)[:8]})" for run in matches[:SHOWN_RUNS]
            ) + (f" and {len(matches) - SHOWN_RUNS} more" if len(matches) > SHOWN_RUNS else "")
            raise InputError(f"{what} {ref!r} matches {len(matches)} runs: {choices}; give the run's name or id")
    raise InputError(
        f"no submitted run named {ref!r}, of a manifest so named, or with an id starting so;"
        " `videosweep status` lists them"
    )


def running_jobs(client: SyncPrefectClient, run: FlowRun) -> int:
    """Render tasks running now in the run's subflow (a task renders a job, or on Dask a shard, one job at a time)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    running = TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))
    subflows = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
    return len(client.read_task_runs(flow_run_filter=subflows, task_run_filter=TaskRunFilter(state=running)))


def cancel(client: SyncPrefectClient, run: FlowRun) -> str:
    """Cancel a run: a waiting one at once, a running one through its worker (which ends its processes)."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Cancelled, Cancelling

    if run.state is None or run.state.is_final():
        raise InputError(f"run {run.name} is {run.state.name if run.state else 'gone'}: nothing to cancel")
    waiting = run.state.type in (StateType.SCHEDULED, StateType.PAUSED)
    result = client.set_flow_run_state(run.id, Cancelled() if waiting else Cancelling(), force=waiting)
    if result.status != SetStateStatus.ACCEPT:
        raise InputError(f"run {run.name}: the server refused to cancel it ({result.details})")
    return "Cancelled" if waiting else "Cancelling"


def serve(pool: str | None = None, limit: int = 1) -> None:
    """Run a process worker for ``pool`` (default: the deployment's) until interrupted, ``limit`` runs at a time."""
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.process import ProcessWorker

    with api_client() as client:
        ensure_deployment(client, pool)

    async def work() -> None:
        async with ProcessWorker(work_pool_name=pool or deployment_spec().pool, limit=limit) as worker:
            await worker.start()

    run_coro_as_sync(work())


def run_progress(client: SyncPrefectClient, run: FlowRun) -> Progress:
    """A submitted run's jobs, from the results table of its output root, and its running render tasks."""
    from videosweep.tasks.models import file_sha256
    from videosweep.tasks.submission import progress_of

    manifest = Path(run.parameters["manifest"])
    running = running_jobs(client, run) if run.state is not None and run.state.is_running() else 0
    return progress_of(
        Path(run.parameters["out"]),
        file_sha256(manifest) if manifest.is_file() else "",
        run.labels.get(JOBS_LABEL),
        run.start_time,
        running,
        run.parameters.get("workers") or 1,
    )
