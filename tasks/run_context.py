"""What every job of one run shares: its id, output root, device and settings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class RunContext:
    """What every job of one run shares; small and picklable, it travels with each task."""

    run_id: str
    out_root: Path
    device: str
    manifest_name: str
    manifest_path: str
    manifest_sha256: str
    hang_timeout_s: float | None = None  # cancel a job after this long without progress (tasks.watchdog)
    overlap_export: bool = True  # export a job while the next renders (tasks.render.export.Exporter)
    batch: int = 1  # videos per pipeline call at most, where consecutive jobs allow (tasks.render.batches)
    # sources whose chained jobs read the H.264 mp4 even where lossless frames are kept (a rerun of a job that did)
    lossy_inputs: frozenset[str] = frozenset()

    @classmethod
    def new(
        cls,
        out_root: Path,
        device: str,
        manifest,
        hang_timeout_s: float | None = None,
        overlap_export: bool = True,
        batch: int = 1,
    ) -> RunContext:
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        path = str(manifest.path.resolve())
        return cls(run_id, out_root, device, manifest.name, path, manifest.sha256, hang_timeout_s, overlap_export, batch)
