"""What a job will cost before it renders: its video's shape, its compute, and the bytes it writes.

The plan balances workers by :func:`job_cost`; a run checks the disk against :func:`estimated_output_bytes`.
"""

from __future__ import annotations

import math

from .jobs import Job
from .models import family_spec

#: Bytes an H.264 video (crf 17) takes per pixel of each frame, generously: generated video of
#: random-weight models (noise) measured ~0.15 here; real footage is far smaller.
BYTES_PER_PIXEL_FRAME = 0.25
#: FFV1 frames kept for a chain (tasks.video.write_lossless): raw RGB is about their worst case (random noise).
LOSSLESS_BYTES_PER_PIXEL_FRAME = 3.0


def video_shape(job: Job) -> tuple[int, int, int]:
    """(frames, height, width) of a job's video; 16 frames of 512 px where the row left them to the pipeline."""
    params = job.params
    frames_param = family_spec(job.family).frames_param
    frames = (params.get(frames_param) if frames_param else None) or 16
    return frames, params.get("height") or 512, params.get("width") or 512


def job_cost(job: Job) -> float:
    """Estimated cost in megapixel-frame-steps: frames x height x width x denoising steps / 1e6 (25 steps if unset)."""
    frames, height, width = video_shape(job)
    return frames * height * width * (job.params.get("num_inference_steps") or 25) / 1e6


def estimated_output_bytes(jobs: list[Job]) -> int:
    """What rendering ``jobs`` will write: their videos, at ``BYTES_PER_PIXEL_FRAME``, and the lossless frames of
    the jobs another job takes as input (``keep_frames``), at most about raw RGB (``LOSSLESS_BYTES_PER_PIXEL_FRAME``)."""
    videos = sum(math.prod(video_shape(job)) for job in jobs) * BYTES_PER_PIXEL_FRAME
    frames = sum(math.prod(video_shape(job)) for job in jobs if job.keep_frames) * LOSSLESS_BYTES_PER_PIXEL_FRAME
    return int(videos + frames)
