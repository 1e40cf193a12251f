"""mp4 export: H.264 yuv420p at the job's fps, even sides, close to the frames, atomic."""

from pathlib import Path

import numpy as np
import pytest

from videosweep.tasks.video import read_mp4, write_mp4


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([(x * 2 + t * 8) % 256, (y * 3) % 256, np.full_like(x, 128)], -1) for t in range(count)]
    return np.asarray(frames, dtype=np.uint8)


def test_round_trip_keeps_count_size_fps_and_content(tmp_path: Path):
    frames = gradient_frames(6, 64, 96)
    assert write_mp4(frames, 12, tmp_path / "v.mp4") == (64, 96)
    decoded, fps = read_mp4(tmp_path / "v.mp4")
    assert decoded.shape == frames.shape and fps == 12
    mse = np.mean((decoded.astype(float) - frames.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # PSNR in dB: visually lossless
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_odd_sizes_are_padded_not_rescaled(tmp_path: Path):
    frames = gradient_frames(3, 33, 47)
    assert write_mp4(frames, 7, tmp_path / "odd.mp4") == (34, 48)
    decoded, _ = read_mp4(tmp_path / "odd.mp4")
    assert decoded.shape == (3, 34, 48, 3)


def test_bad_frames_are_refused_and_leave_nothing(tmp_path: Path):
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((2, 8, 8, 3), dtype=np.float32), 7, tmp_path / "bad.mp4")
    assert not list(tmp_path.iterdir())
