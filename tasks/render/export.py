"""The second half of a job: its frames written out (mp4 with its record inside, metrics) and its record written.

:class:`Exporter` does it on a thread while the next job renders, so the GPU does not wait for
the encoder. A video gets its final name only once written whole; a disk that fills stops the
run (tasks.errors.DiskFull), its last record written from the root's reserve if need be.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import DiskFull, describe, is_disk_full
from ..layout import job_frames_path, job_video_path
from ..metrics import video_metrics
from ..models.base import Audio, conditioning_image
from ..outroot import release_reserve
from ..provenance import METADATA_TAG
from ..record import JobRecord
from ..results import video_identity, write_record
from ..video import write_lossless, write_mp4
from .start import Rendering

#: Held while a job is exported and recorded, so an interrupted run can let the job in hand finish (flows.process).
FINISHING = threading.Lock()


def finish_job(rendering: Rendering) -> JobRecord:
    """Export a rendered job (mp4 with its record inside, metrics) and write its record.

    Never raises for the job's sake: a failed export is the record's ``failed`` status, a full disk
    its ``DiskFull``, which stops the run (:func:`write_record_or_stop`).
    """
    with FINISHING:
        return write_record_or_stop(rendering.run.out_root, _export(rendering))


def _export(rendering: Rendering) -> JobRecord:
    """The mp4 and metrics of a rendered job; its record, updated with them or with why they failed."""
    run, record, rendered = rendering.run, rendering.record, rendering.rendered
    started = time.perf_counter()
    if rendered is not None:
        try:
            relative = job_video_path(record.job_id)
            if rendered.audio is not None:  # before the record is embedded: the mp4 carries its sound's identity
                record.update(**audio_identity(rendered.audio))
            metadata = {METADATA_TAG: record.embedded()}
            kept = {}
            try:
                if rendering.keep_frames:  # first: an mp4 under its final name has its lossless frames beside it
                    frames_path = job_frames_path(record.job_id)
                    write_lossless(rendered.frames, rendered.fps, run.out_root / frames_path)
                    kept = {"frames_path": frames_path, **video_identity(run.out_root / frames_path, "frames")}
                height, width = write_mp4(
                    rendered.frames, rendered.fps, run.out_root / relative, metadata=metadata, audio=rendered.audio
                )
            except OSError as exc:
                if is_disk_full(exc, run.out_root):
                    raise DiskFull(f"no space left on the disk of {run.out_root}: free some and run again") from exc
                raise
            record.update(
                status="ok",
                video_path=relative,
                **video_identity(run.out_root / relative),
                video_frames=len(rendered.frames),
                video_width=width,
                video_height=height,
                video_fps=float(rendered.fps),
                **kept,
                export_s=time.perf_counter() - started,
            )
            record.metrics = video_metrics(rendered.frames, conditioning_image(rendering.params))
        except Exception as exc:  # noqa: BLE001 - the record is where the failure goes
            record.end("failed", type(exc).__name__, describe(exc))
    # the job's own work: rendering and exporting, not the wait for an export thread
    record.update(total_s=rendering.compute_s + time.perf_counter() - started, finished_at=datetime.now(timezone.utc))
    return record


def audio_identity(audio: Audio) -> dict[str, Any]:
    """The record's audio columns for the sound muxed into a job's mp4."""
    return {
        "audio_sample_rate": audio.sample_rate,
        "audio_channels": audio.channels,
        "audio_samples": audio.samples,
        "audio_duration_s": audio.duration_s,
        "audio_sha256": audio.sha256(),
    }


def write_record_or_stop(out_root: Path, record: JobRecord) -> JobRecord:
    """Write ``record``; on a full disk, give up the root's reserve and write it then.

    If even that fails, the job is left unrecorded (the next run renders it) and the returned
    record, written nowhere, is a ``DiskFull`` one: it stops the run.
    """
    if _written(out_root, record) or (release_reserve(out_root) and _written(out_root, record)):
        return record
    record.end(
        "failed",
        DiskFull.__name__,
        f"no space left on the disk of {out_root} for this job's record: it renders again in the next run",
    )
    return record


def _written(out_root: Path, record: JobRecord) -> bool:
    """Write ``record``: False if the disk is full."""
    try:
        write_record(out_root, record)
    except OSError as exc:
        if not is_disk_full(exc, out_root):
            raise
        return False
    return True


class Exporter:
    """Export a job on a thread while the next one renders: the GPU does not wait for the encoder.

    At most one job is exporting while one renders, so no more than two videos' frames are held
    (N + 1 while a batch of N renders: its jobs are handed over one by one, each waiting for the last).
    ``hand_over`` returns the records finished meanwhile, in order; ``drain`` waits for the last.
    With ``overlap`` False, each job is exported at once in the caller's thread.
    """

    def __init__(self, overlap: bool = True) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="videosweep-export") if overlap else None
        self._exporting = None

    def hand_over(self, rendering: Rendering) -> list[JobRecord]:
        rendering.record.export_overlapped = self._pool is not None
        if self._pool is None:
            return [finish_job(rendering)]
        done = self.drain()
        self._exporting = self._pool.submit(finish_job, rendering)
        return done

    def drain(self) -> list[JobRecord]:
        exporting, self._exporting = self._exporting, None
        return [exporting.result()] if exporting is not None else []

    def close(self) -> None:
        """Wait for the export in hand (what is exporting when the caller fails is still recorded); end the thread."""
        self.drain()
        if self._pool is not None:
            self._pool.shutdown()
