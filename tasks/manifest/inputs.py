"""Input files: resolved against the manifest's folder, checked (pixels first, from the header) and hashed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .messages import _cut

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class _InputFiles:
    """A row checker's input files, each value and each file checked once."""

    def __init__(self, base_dir: Path, max_pixels: int) -> None:
        self.base_dir = base_dir
        self.max_pixels = max_pixels
        self._files: dict[Path, str | Exception] = {}  # resolved path -> its sha256, or why it cannot be used
        self._values: dict[tuple[Any, str], tuple[str | None, str | Exception]] = {}

    def check(self, value: Any, kind: str) -> tuple[str | None, str | Exception]:
        """An input file's resolved path (a string, as the job carries it) and its sha256, or why it cannot be used."""
        key = (value, kind) if isinstance(value, str) else None
        if key is not None and key in self._values:
            return self._values[key]
        outcome = self._check(value, kind)
        if key is not None:
            self._values[key] = outcome
        return outcome

    def _check(self, value: Any, kind: str) -> tuple[str | None, str | Exception]:
        if isinstance(value, str) and value.startswith("@"):  # another job's video: known by its id
            if kind != "video":
                return None, ValueError("only a video input can take another row's output")
            return value, f"job:{value[1:]}"
        if not isinstance(value, str) or not value:
            return None, ValueError(f"must be a path to {'an image' if kind == 'image' else 'a video'} file")
        try:
            path = Path(value).expanduser()
            path = (path if path.is_absolute() else self.base_dir / path).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
            return None, ValueError(f"not a usable path ({_cut(str(exc))})")
        if path not in self._files:
            pixels = self.max_pixels
            self._files[path] = _check_image(path, pixels) if kind == "image" else _check_video(path, pixels)
        return str(path), self._files[path]


def _check_image(path: Path, max_pixels: int) -> str | Exception:
    """The file's sha256 if it is a readable image within ``max_pixels``, else the reason it is not.

    The size is read from the header before anything is decoded; any error of the decoder is the
    image's problem, not a crash.
    """
    import warnings

    from PIL import Image

    try:
        if not path.is_file():
            return FileNotFoundError(f"no such file {_cut(str(path), 300)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # ours is checked below, from the header, before any decoding
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = pil_limit
            with image:
                width, height = image.size
                if width * height > max_pixels:
                    return ValueError(_too_many_pixels("image", width, height, max_pixels))
                image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file (OSError, SyntaxError, struct.error)
        return ValueError(f"not a readable image ({exc.__class__.__name__}: {_cut(str(exc), 300)})")
    return _file_sha256(path)


def _too_many_pixels(what: str, width: int, height: int, max_pixels: int) -> str:
    side = math.isqrt(max_pixels)
    kind = "image" if what == "image" else "video"
    return (
        f"the {what} {'is' if what == 'image' else 'are'} {width}x{height} ({width * height:,} pixels), more than the limit"
        f" of {max_pixels:,} ({side}x{side}); give a smaller {kind} (the model resizes its input to the output size)"
    )


def _check_video(path: Path, max_pixels: int) -> str | Exception:
    """The file's sha256 if ffmpeg reads a first frame, within ``max_pixels``, from it; else the reason it does not.

    The frame size comes from ffmpeg's header before the first frame is decoded.
    """
    import imageio_ffmpeg

    try:
        if not path.is_file():
            return FileNotFoundError(f"no such file {_cut(str(path), 300)}")
    except (OSError, ValueError) as exc:
        return ValueError(f"not a usable path ({_cut(str(exc))})")
    if path.suffix.lower() in IMAGE_SUFFIXES:  # ffmpeg would read it as a one-frame video
        return ValueError("is an image; a video input needs a video file (mp4, webm, mov, ...)")
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            meta = next(reader)  # ffmpeg's header: the frame size, before any frame is decoded
            width, height = meta["size"]
            if width * height > max_pixels:
                return ValueError(_too_many_pixels("video's frames", width, height, max_pixels))
            next(reader)  # the first frame decodes
        finally:
            reader.close()
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError, TypeError) as exc:
        return ValueError(f"not a readable video ({exc.__class__.__name__}: {_cut(str(exc), 300)})")
    return _file_sha256(path)


def _file_sha256(path: Path) -> str | Exception:
    from ..models import file_sha256

    try:
        return file_sha256(path)
    except OSError as exc:
        return ValueError(f"cannot read the file ({_cut(str(exc))})")
