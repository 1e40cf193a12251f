"""The results table: one schema for every part, atomic parts, reading tolerates older parts."""

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from videosweep.tasks.models import FAMILIES
from videosweep.tasks.results import SCHEMA, history, read_results, video_identity, write_record


def record(job_id: str, status: str = "ok", attempt: int = 1, **extra) -> dict:
    now = datetime.now(timezone.utc)
    return {"job_id": job_id, "status": status, "attempt": attempt, "started_at": now, "finished_at": now, **extra}


def test_every_family_parameter_is_a_typed_column():
    for spec in FAMILIES.values():
        for name in spec.params.model_fields:
            assert name in SCHEMA.names, name
    assert SCHEMA.field("motion_bucket_id").type == pa.int64()
    assert SCHEMA.field("noise_aug_strength").type == pa.float64()
    assert SCHEMA.field("image").type == pa.string() and "input_image_sha256" in SCHEMA.names


def test_parts_are_written_whole_with_the_schema(tmp_path: Path):
    path = write_record(tmp_path, record("a" * 16, motion_bucket_id=60))
    assert path.parent == tmp_path / "results" and not path.name.startswith(".")
    assert pq.read_schema(path) == SCHEMA
    assert [p.name for p in (tmp_path / "results").iterdir()] == [path.name]


def test_unknown_record_keys_are_refused(tmp_path: Path):
    with pytest.raises(KeyError, match="motion_bucket"):
        write_record(tmp_path, record("a" * 16, motion_bucket=60))
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_reading_an_empty_root_gives_the_columns(tmp_path: Path):
    table = read_results(tmp_path)
    assert table.empty and list(table.columns) == SCHEMA.names


def test_parts_from_an_older_schema_are_read_with_every_column(tmp_path: Path):
    """A plain directory read takes one file's schema; read_results unifies them."""
    (tmp_path / "results").mkdir()
    pq.write_table(pa.table({"job_id": ["0" * 16], "status": ["ok"]}), tmp_path / "results" / "part-0-old.parquet")
    write_record(tmp_path, record("b" * 16, motion_bucket_id=60))
    table = read_results(tmp_path).sort_values("job_id")
    assert list(table["job_id"]) == ["0" * 16, "b" * 16]
    assert pd.isna(table["motion_bucket_id"].iloc[0]) and table["motion_bucket_id"].iloc[1] == 60


def test_history_counts_attempts_and_needs_the_video(tmp_path: Path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "ok.mp4").write_bytes(b"x")
    write_record(tmp_path, record("failed-then-ok", status="failed"))
    identity = video_identity(tmp_path / "videos" / "ok.mp4")  # what the render records with the video
    write_record(tmp_path, record("failed-then-ok", attempt=2, video_path="videos/ok.mp4", **identity))
    write_record(tmp_path, record("video-deleted", video_path="videos/gone.mp4"))
    write_record(tmp_path, record("only-failed", status="failed"))
    past = history(tmp_path)
    assert past.finished == {"failed-then-ok"}
    assert past.attempts == {"failed-then-ok": 2, "video-deleted": 1, "only-failed": 1}
