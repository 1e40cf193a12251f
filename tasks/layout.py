"""The layout of an output root: the names of what a run writes there, in one place every module reads.

```
OUT/videos/<job_id>.mp4 (.mkv)   results/part-*.parquet   grids/   report.html   manifest.lock.yaml
OUT/inputs/<sha256><suffix>      reruns/                  .videosweep/ (the run holding the root)
OUT/posters/<job_id>.jpg (report.html's first frames)
```
"""

from __future__ import annotations

VIDEOS_DIR = "videos"
RESULTS_DIR = "results"
GRIDS_DIR = "grids"
#: Each video's first frame, a small JPEG that report.html shows until the video plays (tasks.report_data).
POSTERS_DIR = "posters"
REPORT_NAME = "report.html"
#: The last run's expanded job table, revisions and input hashes resolved (tasks.provenance.write_lock).
LOCK_FILE = "manifest.lock.yaml"
#: Input files kept by content, where a rerun finds them (tasks.provenance.keep_inputs).
KEPT_INPUTS_DIR = "inputs"
#: Where ``videosweep rerun`` renders by default.
RERUNS_DIR = "reruns"
#: The run holding the root: its lock, the mark of its processes, its disk reserve (tasks.outroot).
STATE_DIR = ".videosweep"

#: Folders a run owns and files it writes at the top of the root: no manifest may live there.
OWNED_DIRS = (STATE_DIR, RESULTS_DIR, GRIDS_DIR, VIDEOS_DIR, KEPT_INPUTS_DIR, POSTERS_DIR)
WRITTEN_FILES = (LOCK_FILE, REPORT_NAME)


def job_video_path(job_id: str) -> str:
    """Where a job's video lives, relative to the output root."""
    return f"{VIDEOS_DIR}/{job_id}.mp4"


def job_frames_path(job_id: str) -> str:
    """Where a job's frames are kept losslessly (FFV1, ``tasks.video.write_lossless``), relative to the output root:
    written beside the mp4 for jobs that another job takes as input (``keep_frames``)."""
    return f"{VIDEOS_DIR}/{job_id}.mkv"
