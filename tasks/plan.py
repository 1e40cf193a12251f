"""Which worker renders which jobs, in what order: load each pipeline on as few workers as keep all busy.

Jobs are grouped by pipeline; the costliest groups are placed first, each on the least-loaded
worker, and a group spills onto another worker only when the one it is on already holds its
fair share of the whole run's cost. A worker's jobs are cut into small shards (the unit of a
Prefect task), which the flow's dispatcher (flows.dispatch) hands out as workers free up.

Jobs that take another job's video come in later *levels*, run after the level before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import InputError
from .estimates import job_cost
from .jobs import Job

#: Shards hold at most this many jobs, and at least a quarter of a worker's jobs of one pipeline
#: are split into four, so an idle worker has queued work to take without a task per job.
MAX_SHARD_JOBS = 8


@dataclass
class Shard:
    index: int
    level: int
    worker: int  # the preferred worker slot (0 .. workers - 1)
    jobs: list[Job]

    @property
    def cost(self) -> float:
        return sum(job_cost(job) for job in self.jobs)

    @property
    def pipeline_key(self) -> tuple:
        return self.jobs[0].pipeline_key  # a shard never mixes pipelines

    @property
    def name(self) -> str:
        return f"shard-{self.index}-w{self.worker}-{len(self.jobs)}jobs"


@dataclass
class Plan:
    workers: int
    shards: list[Shard] = field(default_factory=list)

    @property
    def levels(self) -> list[list[Shard]]:
        by_level: dict[int, list[Shard]] = {}
        for shard in self.shards:
            by_level.setdefault(shard.level, []).append(shard)
        return [by_level[level] for level in sorted(by_level)]

    @property
    def loads(self) -> int:
        """Pipeline loads if every shard runs where and when it is planned (a worker holds one pipeline)."""
        return sum(
            _changes([shard.pipeline_key for shard in self.shards if shard.worker == worker])
            for worker in range(self.workers)
        )

    def worker_costs(self) -> list[float]:
        costs = [0.0] * self.workers
        for shard in self.shards:
            costs[shard.worker] += shard.cost
        return costs

    def format(self) -> str:
        costs = self.worker_costs()
        lines = [f"{len(self.shards)} shards on {self.workers} workers; {self.loads} pipeline loads"]
        for worker in range(self.workers):
            mine = [shard for shard in self.shards if shard.worker == worker]
            models = sorted({job.model for shard in mine for job in shard.jobs})
            jobs = sum(len(shard.jobs) for shard in mine)
            lines.append(f"  worker {worker}: {jobs} jobs, cost {costs[worker]:.1f}, models {', '.join(models) or '-'}")
        for shard in self.shards:
            lines.append(
                f"    {shard.name}: level {shard.level}, cost {shard.cost:.1f}, {shard.jobs[0].model}, "
                f"jobs {', '.join(job.job_id[:8] for job in shard.jobs)}"
            )
        return "\n".join(lines)


def in_order(jobs: list[Job]) -> list[Job]:
    """The order one worker renders ``jobs`` in: level by level, each pipeline's jobs together."""
    return [job for shard in make_plan(jobs, 1).shards for job in shard.jobs]


def naive_loads(jobs: list[Job], workers: int) -> int:
    """Loads when jobs are dealt round-robin in manifest order: the baseline the plan beats."""
    return sum(_changes([job.pipeline_key for job in jobs[worker::workers]]) for worker in range(workers))


def _changes(keys: list[tuple]) -> int:
    """How many times a worker running ``keys`` in order loads a pipeline."""
    return sum(1 for index, key in enumerate(keys) if index == 0 or keys[index - 1] != key)


def make_plan(jobs: list[Job], workers: int, batch: int = 1) -> Plan:
    """Place ``jobs`` on ``workers`` slots, level by level (see the module docstring).

    With ``batch`` (``run --batch``), shards hold whole batches: a multiple of ``batch`` jobs.
    """
    if workers < 1:
        raise InputError(f"workers={workers}: need at least one")
    plan = Plan(workers)
    for level, level_jobs in enumerate(_levels(jobs)):
        _place_level(plan, level, level_jobs, batch)
    _join_levels(plan)
    return plan


def _join_levels(plan: Plan) -> None:
    """On each worker, end a level with the pipeline the next level starts with, so it stays loaded."""
    levels = plan.levels
    for before, after in zip(levels, levels[1:]):
        for worker in range(plan.workers):
            next_keys = [shard.pipeline_key for shard in after if shard.worker == worker]
            mine = [shard for shard in before if shard.worker == worker]
            mine.sort(key=lambda shard: shard.pipeline_key in next_keys)  # stable: shared pipelines go last
            if mine:
                last = mine[-1].pipeline_key
                theirs = [shard for shard in after if shard.worker == worker]
                theirs.sort(key=lambda shard: shard.pipeline_key != last)  # and come first after
                _reorder(plan, mine)
                _reorder(plan, theirs)
    for index, shard in enumerate(plan.shards):
        shard.index = index


def _reorder(plan: Plan, shards: list[Shard]) -> None:
    """Put ``shards`` in the given order, in the places they already hold in the plan."""
    wanted = {id(shard) for shard in shards}
    places = [place for place, shard in enumerate(plan.shards) if id(shard) in wanted]
    for place, shard in zip(places, shards):
        plan.shards[place] = shard


def _levels(jobs: list[Job]) -> list[list[Job]]:
    level: dict[str, int] = {}
    for job in jobs:  # a job table lists sources before the jobs that take their videos
        level[job.job_id] = 1 + max((level.get(source, 0) for source in job.depends_on), default=-1)
    grouped: dict[int, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(level[job.job_id], []).append(job)
    return [grouped[key] for key in sorted(grouped)]


def _place_level(plan: Plan, level: int, jobs: list[Job], batch: int) -> None:
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.pipeline_key, []).append(job)
    fair_share = sum(job_cost(job) for job in jobs) / plan.workers
    load = [0.0] * plan.workers
    assigned: dict[int, list[list[Job]]] = {worker: [] for worker in range(plan.workers)}

    for group in sorted(groups.values(), key=lambda group: -sum(map(job_cost, group))):
        remaining = list(group)
        while remaining:
            worker = min(range(plan.workers), key=lambda slot: load[slot])
            taken: list[Job] = []
            # fill this worker up to its fair share, one job at least; the rest spills to the next
            while remaining and (not taken or load[worker] + job_cost(remaining[0]) <= fair_share * 1.0001):
                job = remaining.pop(0)
                taken.append(job)
                load[worker] += job_cost(job)
            assigned[worker].append(taken)

    for worker, runs in assigned.items():
        for run in runs:
            size = max(1, min(MAX_SHARD_JOBS, math.ceil(len(run) / 4)))
            size = batch * math.ceil(size / batch)  # a batch is rendered by one task, in one call
            for start in range(0, len(run), size):
                plan.shards.append(Shard(len(plan.shards), level, worker, run[start : start + size]))
