"""mp4 files: H.264, yuv420p (and AAC sound where a family renders one), written aside and renamed so no
half-written video is ever left."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .files import write_atomic

if TYPE_CHECKING:
    from .models.base import Audio

#: The sound of an mp4 with audio: AAC-LC (ffmpeg's own encoder, as the docs' PyAV export uses "aac") at this
#: constant bitrate, at the family's sample rate and channel count (LTX-2: 24 kHz stereo).
AUDIO_CODEC = ["-c:a", "aac", "-b:a", "128k"]
#: How far an AAC stream's decoded length may be from the samples sent: the encoder works in frames of 1024
#: samples, and the mp4's edit list trims its priming; what is left over is under one frame.
AAC_FRAME = 1024


def write_mp4(
    frames: np.ndarray,
    fps: int,
    path: Path,
    crf: int = 17,
    metadata: dict[str, str] | None = None,
    audio: Audio | None = None,
) -> tuple[int, int]:
    """Encode uint8 frames (frames, height, width, 3) to ``path`` atomically; return the encoded (height, width).

    Odd sizes are padded by one edge pixel (yuv420p needs even sides); nothing is rescaled.
    ``metadata`` goes into the container's tags (``comment``, ``title``...; read back by
    :func:`read_mp4_metadata`); ffmpeg adds no timestamp, so equal frames and tags give equal bytes.
    ``audio`` (:class:`~tasks.models.base.Audio`), where given, is muxed as an AAC stream
    (:data:`AUDIO_CODEC`) from its 16-bit samples (``Audio.pcm16``: the docs' conversion), neither
    cut nor padded to the video's length; without it the file has no audio stream, as before.
    The file gets its final name only once ffmpeg has ended well and the file decodes to as many
    frames as were sent, and to about as many samples (:func:`check_mp4`): a full disk or a dying
    encoder raises :class:`EncodeError` (an ``OSError`` with errno ENOSPC when the disk is full) and leaves nothing.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames shaped (frames, height, width, 3), got {frames.dtype} {frames.shape}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]
    tags = [arg for key, value in (metadata or {}).items() for arg in ("-metadata", f"{key}={value}")]
    sound = None if audio is None else (audio.pcm16(), audio.sample_rate)

    def check(scratch: Path) -> None:
        check_mp4(scratch, len(frames))
        if audio is not None:
            check_audio(scratch, audio.samples, audio.channels, audio.sample_rate)

    write_atomic(path, lambda scratch: _encode(frames, fps, scratch, crf, tags, sound=sound), check)
    return height, width


class EncodeError(OSError):
    """ffmpeg could not write a video (its own message attached); errno ENOSPC when the disk is full."""


#: FFV1 (lossless, every frame a key frame) in RGB: what :func:`write_lossless` keeps. ``bitexact``
#: leaves out the encoder's version, so equal frames give equal bytes.
LOSSLESS_CODEC = [
    "-vcodec", "ffv1", "-level", "3", "-g", "1", "-pix_fmt", "bgr0", "-v", "error",
    "-fflags", "+bitexact", "-flags", "+bitexact",
]  # fmt: skip


def write_lossless(frames: np.ndarray, fps: float, path: Path) -> None:
    """Keep uint8 frames (frames, height, width, 3) exactly, as an FFV1 Matroska file (``.mkv``), atomically.

    What a chained job reads as its source's video (the mp4 beside it is H.264: up to ~10 levels
    off). Any size (no padding) and rate; the same reader as an mp4 (:func:`read_mp4`). The file
    gets its final name only once it decodes to exactly these frames, every value; a full disk
    raises :class:`EncodeError` with errno ENOSPC and leaves nothing. Equal frames give equal bytes.
    Measured on 24 frames of 576x320 (13.3 MB raw): 11.0 MB for a random-weight model's noise-like
    frames (a compressed ``.npz``: 12.6 MB), 0.81 MB for a natural pan (``.npz``: 1.46 MB).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames shaped (frames, height, width, 3), got {frames.dtype} {frames.shape}")

    def check(scratch: Path) -> None:
        decoded, _ = read_mp4(scratch)
        if decoded.shape != frames.shape or not np.array_equal(decoded, frames):
            raise EncodeError(errno.EIO, f"{scratch.name} does not decode to the frames written")

    write_atomic(path, lambda scratch: _encode(frames, fps, scratch, 0, [], LOSSLESS_CODEC), check)


def _encode(
    frames: np.ndarray,
    fps: float,
    path: Path,
    crf: int,
    tags: list[str],
    codec: list[str] | None = None,
    sound: tuple[np.ndarray, int] | None = None,
) -> None:
    """Pipe raw RGB frames through ffmpeg's libx264 into ``path`` (the arguments imageio-ffmpeg's writer gives it),
    or through the encoder ``codec``'s arguments name; ``sound`` (int16 samples shaped (samples, channels), and
    their rate) through a second pipe into an AAC stream beside them."""
    import os
    import subprocess
    import tempfile
    import threading
    from fractions import Fraction

    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    output = codec if codec is not None else [
        "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-v", "error",
        "-crf", str(crf), "-movflags", "+faststart",
    ]  # fmt: skip
    video_input = [
        "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
        "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()), "-i", "-",
    ]  # fmt: skip
    source = sink = None
    if sound is None:
        streams = ["-an"]
    else:  # the samples go through a pipe of their own, fed by a thread: ffmpeg reads both inputs as it muxes
        samples, rate = sound
        source, sink = os.pipe()
        audio_input = ["-f", "s16le", "-ar", str(rate), "-ac", str(samples.shape[1]), "-i", f"pipe:{source}"]
        video_input += audio_input
        streams = ["-map", "0:v:0", "-map", "1:a:0", *AUDIO_CODEC]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", *video_input, *streams, *output, *tags, str(path)]
    feeder = None
    with tempfile.TemporaryFile() as log:  # ffmpeg's complaints, for the error; never on the terminal
        try:
            encoder = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, pass_fds=(source,) if sound else ()
            )
        except BaseException:
            for end in (source, sink):
                if end is not None:
                    os.close(end)
            raise
        if sound is not None:
            os.close(source)  # the encoder holds its own copy
            feeder = threading.Thread(target=_feed, args=(sink, samples), name="videosweep-audio-feed", daemon=True)
            feeder.start()
        try:
            try:
                for frame in frames:
                    encoder.stdin.write(np.ascontiguousarray(frame))
                encoder.stdin.close()
            except BrokenPipeError:  # ffmpeg ended early: its exit code and log say why
                pass
            code = encoder.wait()
        finally:
            if encoder.poll() is None:  # something raised on the way: no encoder outlives its video
                encoder.kill()
                encoder.wait()
            if feeder is not None:  # the encoder is gone: the feeder's pipe is broken or drained
                feeder.join()
        if code != 0:
            log.seek(0)
            message = ffmpeg_says(log.read()[-4000:].decode(errors="replace")) or f"exit code {code}"
            raise _encode_error(f"ffmpeg could not write {path.name}: {message}")


def _feed(sink: int, samples: np.ndarray) -> None:
    """Write int16 samples into the pipe ``sink`` (little-endian, interleaved), then close it; an encoder that ended
    early (a broken pipe) is the encoder's error to report."""
    import os

    with os.fdopen(sink, "wb") as pipe:
        try:
            pipe.write(samples.astype("<i2", copy=False).tobytes())
        except BrokenPipeError:
            pass


def ffmpeg_says(stderr: str, limit: int = 500) -> str:
    """ffmpeg's complaint as one line: its lines joined by "; " without their ``[in#0 @ 0x...]`` prefixes, the end
    kept (where it says what failed), for an error message a terminal shows on one line."""
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip() for line in stderr.splitlines()]
    return "; ".join(line for line in lines if line)[-limit:]


def _encode_error(message: str) -> EncodeError:
    import errno

    if "No space left on device" in message:
        return EncodeError(errno.ENOSPC, message)
    return EncodeError(errno.EIO, message)


def check_mp4(path: Path, frames: int | None = None) -> int:
    """Decode every frame of ``path`` (into nothing); raise :class:`EncodeError` unless it decodes cleanly
    (to ``frames`` frames, where given). Returns the frame count."""
    import subprocess

    import imageio_ffmpeg

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
        "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    counts = re.findall(r"^frame=(\d+)$", done.stdout, re.MULTILINE)
    decoded = int(counts[-1]) if counts else 0
    problem = ffmpeg_says(done.stderr)
    if done.returncode != 0 or problem or (frames is not None and decoded != frames):
        wanted = f" of {frames}" if frames is not None else ""
        raise _encode_error(f"{path.name} does not decode ({decoded}{wanted} frames): {problem or 'no video stream'}")
    return decoded


def audio_stream(path: Path) -> dict | None:
    """The first audio stream of a video, as ffmpeg describes it: ``codec``, ``sample_rate`` (Hz), ``channels``,
    ``layout`` and ``bitrate`` (kb/s, where said); None if the file has none. Raises if ffmpeg cannot open the file."""
    import subprocess

    import imageio_ffmpeg

    # `ffmpeg -i file` with no output prints the streams, then fails for want of an output: only its listing counts
    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if "Input #0" not in done.stderr:
        raise InputError(f"cannot read {path}: {ffmpeg_says(done.stderr) or 'ffmpeg failed'}")
    line = re.search(r"Stream #0:\d+\S*: Audio: ([^\n]*)", done.stderr)
    if line is None:
        return None
    parts = [part.strip() for part in re.split(r",(?![^(]*\))", line.group(1))]
    rate = next((int(m.group(1)) for part in parts if (m := re.fullmatch(r"(\d+) Hz", part))), None)
    layout = parts[2] if len(parts) > 2 else ""
    channels = {"mono": 1, "stereo": 2}.get(layout)
    if channels is None and (m := re.match(r"(\d+) channels", layout)):
        channels = int(m.group(1))
    bitrate = next((int(m.group(1)) for part in parts if (m := re.match(r"(\d+) kb/s", part))), None)
    return {
        "codec": parts[0].split()[0],
        "profile": m.group(1) if (m := re.search(r"\((\w+)\)", parts[0])) else None,
        "sample_rate": rate,
        "channels": channels,
        "layout": layout,
        "bitrate_kbps": bitrate,
    }


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A video's first audio stream decoded to float32 samples in [-1, 1], shaped (channels, samples), and its rate.

    Raises :class:`InputError` if the file has no audio stream, :class:`EncodeError` if it does not decode cleanly.
    """
    import subprocess

    import imageio_ffmpeg

    info = audio_stream(path)
    if info is None or not info["channels"] or not info["sample_rate"]:
        raise InputError(f"{path} has no audio stream" if info is None else f"{path}: an audio stream ffmpeg does not describe")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0",
        "-f", "f32le", "-acodec", "pcm_f32le", "-",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, check=False)
    problem = ffmpeg_says(done.stderr.decode(errors="replace"))
    if done.returncode != 0 or problem:
        raise _encode_error(f"the audio of {path.name} does not decode: {problem or f'exit code {done.returncode}'}")
    samples = np.frombuffer(done.stdout, dtype="<f4").reshape(-1, info["channels"]).T
    return np.ascontiguousarray(samples), info["sample_rate"]


def check_audio(path: Path, samples: int, channels: int, sample_rate: int) -> None:
    """Raise :class:`EncodeError` unless ``path``'s audio stream decodes cleanly to ``channels`` channels at
    ``sample_rate``, within one AAC frame (:data:`AAC_FRAME`) of ``samples`` samples."""
    try:
        decoded, rate = read_audio(path)
    except InputError as exc:
        raise EncodeError(errno.EIO, str(exc)) from None
    if rate != sample_rate or decoded.shape[0] != channels or abs(decoded.shape[1] - samples) >= AAC_FRAME:
        raise EncodeError(
            errno.EIO,
            f"the audio of {path.name} decodes to {decoded.shape[0]} channels x {decoded.shape[1]} samples at {rate} Hz, "
            f"not {channels} x {samples} at {sample_rate} Hz",
        )


def read_mp4(path: Path) -> tuple[np.ndarray, float]:
    """All frames of a video as uint8 (frames, height, width, 3), and its fps."""
    frames, fps = iter_mp4(path)
    return np.stack(list(frames)), fps


def iter_mp4(path: Path) -> tuple[Iterator[np.ndarray], float]:
    """A video's frames one at a time (uint8 height x width x 3), and its fps: for readers that shrink each frame."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    width, height = meta["size"]
    frames = (np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3) for buffer in reader)
    return frames, float(meta["fps"])


def read_mp4_metadata(path: Path) -> dict[str, str]:
    """The container's global tags (``comment``, ``encoder``...), read by the bundled ffmpeg (there is no ffprobe)."""
    import subprocess

    import imageio_ffmpeg

    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise InputError(f"cannot read the metadata of {path}: {ffmpeg_says(done.stderr) or 'ffmpeg failed'}")
    # ffmetadata: a ";FFMETADATA1" line, then key=value lines; '=', ';', '#', '\\' and newlines escaped by '\\'
    line = re.compile(r"^((?:[^\\=\n]|\\.)+)=((?:[^\\\n]|\\.)*)$", re.MULTILINE | re.DOTALL)
    escape = re.compile(r"\\(.)", re.DOTALL)
    return {
        escape.sub(r"\1", key): escape.sub(r"\1", value) for key, value in line.findall(done.stdout) if key[0] not in ";#"
    }


def read_video_info(path: Path) -> dict:
    """ffmpeg's metadata of a video (size, fps, ...) after decoding its first frame; raises if unreadable."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        next(reader)
        return meta
    finally:
        reader.close()


def write_poster(video: Path, path: Path, max_width: int) -> Path:
    """The first frame of ``video`` as a JPEG at ``path`` (atomically), shrunk to at most ``max_width`` pixels wide.

    One ffmpeg call that decodes a single frame: a page of thousands of videos shows these until one plays.
    Raises :class:`EncodeError` if ffmpeg reads no frame.
    """
    import subprocess

    import imageio_ffmpeg

    def extract(scratch: Path) -> None:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(video), "-frames:v", "1",
            "-vf", f"scale='min({max_width},iw)':-2", "-q:v", "4", "-y", str(scratch),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
        if done.returncode != 0 or not scratch.is_file() or scratch.stat().st_size == 0:
            raise _encode_error(f"no first frame of {video.name}: {ffmpeg_says(done.stderr) or 'no video stream'}")

    return write_atomic(path, extract)


def read_video(path: Path, num_frames: int | None = None, max_frames: int | None = None) -> tuple[list, int]:
    """A video input's first ``num_frames`` frames (all by default) as RGB PIL images, and its frame rate.

    What diffusers' video pipelines take as ``video=``/``image=``. Nothing is silently cut: a clip
    shorter than ``num_frames``, or longer than ``max_frames`` when no ``num_frames`` is given, is refused.
    """
    from PIL import Image

    frames, fps = read_mp4(path)
    if num_frames is not None and num_frames > len(frames):
        raise ValueError(f"num_frames={num_frames}, but the video {path} has only {len(frames)} frames")
    if num_frames is None and max_frames is not None and len(frames) > max_frames:
        raise ValueError(
            f"the video {path} has {len(frames)} frames, more than {max_frames} in one batch; "
            f"set num_frames (1-{max_frames}) to take its first frames"
        )
    return [Image.fromarray(frame) for frame in frames[: num_frames or len(frames)]], max(1, round(fps))


def read_input_video(path: Path, num_frames: int | None, check_count: Callable[[int], object]) -> tuple[list, int]:
    """A video input's frames (PIL images) and frame rate: its first ``num_frames``, or, where the row gives no count,
    all of them, refused unless ``check_count`` (the frame counts the family's VAE gives back) takes their number."""
    video, fps = read_video(path, num_frames)
    if num_frames is None:
        try:
            check_count(len(video))
        except ValueError as exc:
            raise ValueError(
                f"the video {path} has {len(video)} frames, which {exc}; set num_frames to take its first ones"
            ) from None
    return video, fps


def output_size(size: tuple[int, int], width: int | None, height: int | None, scale: int) -> tuple[int, int]:
    """A video input's output (width, height): the row's, else the video's ``size``; both must divide by ``scale``."""
    width, height = (width, height) if width is not None else size
    if width % scale or height % scale:
        raise ValueError(
            f"the input video is {width}x{height}, not a multiple of {scale} on each side; "
            f"give height and width (multiples of {scale}) to resize it"
        )
    return width, height
