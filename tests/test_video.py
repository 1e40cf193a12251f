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


# -- sound: an AAC stream beside the frames (LTX-2) -------------------------------------------------


def tones(seconds: float, rate: int = 24000) -> "Audio":
    """A stereo waveform: 440 Hz on the left, 660 Hz on the right, past full scale at its loudest (clipped)."""
    from videosweep.tasks.models.base import Audio

    t = np.arange(int(seconds * rate)) / rate
    envelope = np.linspace(0.2, 1.2, len(t))
    return Audio(np.stack([envelope * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32), rate)


def snr_db(decoded: np.ndarray, source: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(source**2) / np.sum((decoded - source) ** 2)))


def test_audio_is_muxed_as_aac_that_decodes_to_the_samples_sent(tmp_path: Path):
    from videosweep.tasks.video import AAC_FRAME, audio_stream, read_audio

    frames, sound = gradient_frames(12, 64, 96), tones(0.5)
    assert write_mp4(frames, 24, tmp_path / "v.mp4", audio=sound) == (64, 96)
    assert read_mp4(tmp_path / "v.mp4")[0].shape == frames.shape  # the frames as before
    stream = audio_stream(tmp_path / "v.mp4")
    assert (stream["codec"], stream["profile"], stream["sample_rate"], stream["channels"]) == ("aac", "LC", 24000, 2)
    decoded, rate = read_audio(tmp_path / "v.mp4")
    assert rate == 24000 and decoded.shape[0] == 2 and abs(decoded.shape[1] - sound.samples) < AAC_FRAME
    # the samples the docs' export hands the encoder: clipped, times 32767, truncated to int16
    source = sound.pcm16().T[:, : decoded.shape[1]] / 32767
    assert np.abs(sound.pcm16()).max() == 32767 and sound.pcm16().dtype == np.int16
    # AAC at 128 kb/s (ffmpeg's encoder, measured: 19.6 dB here): the tones, not noise, nor the channels swapped
    assert snr_db(decoded, source) > 15, snr_db(decoded, source)
    assert snr_db(decoded[::-1], source) < 0
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_audio_bytes_are_reproducible_and_a_silent_video_has_no_audio_stream(tmp_path: Path):
    from videosweep.tasks.video import audio_stream

    frames, sound = gradient_frames(6, 32, 32), tones(0.25)
    write_mp4(frames, 24, tmp_path / "a.mp4", audio=sound, metadata={"comment": "x"})
    write_mp4(frames, 24, tmp_path / "b.mp4", audio=sound, metadata={"comment": "x"})
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    write_mp4(frames, 24, tmp_path / "silent.mp4", metadata={"comment": "x"})
    assert audio_stream(tmp_path / "silent.mp4") is None
    assert sound.sha256() == tones(0.25).sha256() != tones(0.3).sha256()


def test_a_long_sound_goes_through_its_pipe_whole(tmp_path: Path):
    """More samples than a pipe holds (10 s of 48 kHz stereo: 1.9 MB) beside a few frames: no deadlock, no cut."""
    from videosweep.tasks.video import read_audio

    sound = tones(10.0, 48000)
    write_mp4(gradient_frames(4, 32, 32), 24, tmp_path / "long.mp4", audio=sound)
    decoded, rate = read_audio(tmp_path / "long.mp4")
    assert rate == 48000 and abs(decoded.shape[1] - sound.samples) < 1024


def test_a_file_whose_sound_is_not_the_one_sent_is_refused_and_leaves_nothing(tmp_path: Path):
    """AAC has no 1000 Hz rate: ffmpeg resamples to one it has (7350 Hz), the check sees another sound than the one
    sent, and no file is left under any name."""
    from videosweep.tasks.models.base import Audio
    from videosweep.tasks.video import EncodeError

    with pytest.raises(EncodeError, match=r"decodes to 2 channels x \d+ samples at 7350 Hz, not 2 x 500 at 1000 Hz"):
        write_mp4(gradient_frames(4, 32, 32), 24, tmp_path / "v.mp4", audio=Audio(np.zeros((2, 500), np.float32), 1000))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="waveform shaped"):
        Audio(np.zeros((3, 10), np.float32), 24000)


def test_a_full_disk_while_muxing_sound_is_enospc_and_leaves_nothing(tmp_path: Path):
    import errno

    from .test_night import fill, small_disk

    from videosweep.tasks.video import EncodeError

    with small_disk(tmp_path / "disk", 1) as disk:
        filler = fill(disk)
        with pytest.raises(EncodeError) as caught:
            write_mp4(gradient_frames(24, 256, 256), 24, disk / "v.mp4", audio=tones(2.0))
        assert caught.value.errno == errno.ENOSPC
        filler.unlink()
        assert not list(disk.iterdir())


def test_a_truncated_mp4_is_refused_in_one_line(tmp_path):
    """ffmpeg's complaint about a cut-off file (several lines, with ``[in#0 @ 0x...]`` prefixes) reads as one line."""
    from videosweep.tasks.errors import InputError
    from videosweep.tasks.video import read_mp4_metadata, write_mp4

    whole = tmp_path / "whole.mp4"
    write_mp4(np.zeros((4, 16, 16, 3), np.uint8), 8, whole)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[100:])  # its first boxes lost: ffmpeg cannot open it
    with pytest.raises(InputError) as caught:
        read_mp4_metadata(cut)
    assert "\n" not in str(caught.value) and "@ 0x" not in str(caught.value) and "cut.mp4" in str(caught.value)
