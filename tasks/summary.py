"""What a run did, for the person who started it: counts, time per video, where things are.

``RunSummary.format`` is printed on a terminal: every line that holds user text (failures,
problems, paths) goes through ``tasks.text.printable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import stops_run
from .layout import GRIDS_DIR, RESULTS_DIR, VIDEOS_DIR
from .report import Outputs
from .run_context import RunContext
from .text import printable

LINE_LIMIT = 1000  # characters of a failure or problem line (the results table keeps the whole message)


@dataclass
class RunSummary:
    run_id: str
    out_root: Path
    total: int
    ok: int
    failed: int
    skipped: int
    seconds_per_video: float | None  # mean total_s of the videos rendered in this run
    wall_s: float  # the rendering of this run, start to end (workers in parallel)
    failures: list[str] = field(default_factory=list)  # "job_id: ErrorType: message"
    disk_full: bool = False  # the run stopped early: the output disk filled
    outputs: Outputs = field(default_factory=Outputs)  # grids and report drawn after the jobs

    @classmethod
    def of(
        cls, run: RunContext, total: int, records: list[Mapping[str, Any]], wall_s: float, outputs: Outputs | None = None
    ) -> RunSummary:
        ok = [record for record in records if record["status"] == "ok"]
        failed = [record for record in records if record["status"] != "ok"]
        return cls(
            run_id=run.run_id,
            out_root=run.out_root,
            total=total,
            ok=len(ok),
            failed=len(failed),
            skipped=total - len(records),
            seconds_per_video=sum(record["total_s"] for record in ok) / len(ok) if ok else None,
            wall_s=wall_s,
            failures=[f"{record['job_id']}: {record['error_type']}: {record['error']}" for record in failed],
            disk_full=any(map(stops_run, failed)),
            outputs=outputs or Outputs(),
        )

    def format(self) -> str:
        counts = f"{self.total} jobs: {self.ok} ok, {self.failed} failed, {self.skipped} skipped"
        lines = [f"run {printable(self.run_id)}: {counts}"]
        if self.skipped == self.total:
            lines.append("nothing to render: every job already has a video (use --force to render again)")
        if self.seconds_per_video is not None:
            rate = 60 * self.ok / self.wall_s if self.wall_s else 0.0
            lines.append(
                f"{self.seconds_per_video:.2f} s per video (load included); {self.wall_s:.1f} s in all, {rate:.1f} videos/min"
            )
        lines += [f"  failed {printable(failure, LINE_LIMIT)}" for failure in self.failures]
        if self.disk_full:
            lines.append(
                f"stopped early: the disk of {printable(self.out_root)} is full; every finished job is recorded. "
                "Free some space and run the same command again to render the rest"
            )
        out_root = printable(self.out_root)
        lines.append(f"videos:  {printable(self.out_root / VIDEOS_DIR)}")
        lines.append(f"results: {printable(self.out_root / RESULTS_DIR)}  (videosweep results {out_root})")
        if self.outputs.grids:
            lines.append(f"grids:   {printable(self.out_root / GRIDS_DIR)}  ({len(self.outputs.grids)} drawn)")
        lines += [f"  not drawn: {printable(problem, LINE_LIMIT)}" for problem in self.outputs.problems]
        if self.outputs.report:
            lines.append(f"report:  {printable(self.outputs.report)}")
        return "\n".join(lines)
