"""Sweep grids: the videos of a sweep side by side, playing in sync, as one labelled video.

Columns take the values of an x parameter, rows those of an optional y parameter, and an
optional z parameter makes one grid per value. Records that would still share a cell (several
seeds and no axis for seed) make one grid per value of the parameters that separate them.
A parameter that varies in a grid besides its axes is shown, never left out or called fixed:
one that moves with an axis (a zip) under that axis's values, any other in the title and per cell
in the sidecar. A value left unset reads "default". Every grid is written to
``OUT/grids/<name>.mp4`` with an animated preview (WebP or GIF) and a ``<name>.json`` sidecar
describing it, all atomically (temporary name, then rename).

A grid is silent, whatever its cells' videos carry: where some have sound (LTX-2), the sidecar says
which (``audio`` per cell, and an ``audio_note``), and report.html is where one cell's sound is played.
Mixing several tracks into one would play them over each other.

Memory stays bounded by the grid's size, not the sweep's: each cell is shrunk to its place in
the grid frame by frame as it is decoded.

Every string drawn (title, axis names, values, cell labels) goes through ``tasks.text.drawable``:
one line, no control characters, a bounded length; the sidecar keeps the text whole. A string
the font's layout engine (raqm) still refuses is drawn with Pillow's basic layout instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import write_atomic
from .layout import GRIDS_DIR, RESULTS_DIR
from .results import read_results
from .text import ELLIPSIS, drawable, printable
from .video import iter_mp4, read_video_info, write_mp4

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FITS = ("hold", "loop")  # what a clip shorter than the grid shows after its end
PREVIEW_FORMATS = ("webp", "gif")
PREVIEW_MAX = (960, 540)  # an animated preview for chat and docs is shrunk to fit this
MIN_CELL_WIDTH = 256  # smaller videos are enlarged to this (within the size cap) so labels have room
TITLE_LINES = 3  # at most; a longer title ends in an ellipsis (the sidecar keeps it whole)
TITLE_SEPARATOR = " · "  # between the title's key=value items
EMPTY_CELL = (160, 90)  # the cell size when no cell has a video
DECODERS = 4  # cells decoded at once: ffmpeg processes, mostly waiting on pipes
STATUS_COLORS = {"failed": (235, 110, 100), "skipped": (230, 190, 90)}

BACKGROUND, CELL, EMPTY, TEXT, DIM = (24, 24, 24), (0, 0, 0), (48, 48, 48), (235, 235, 235), (170, 170, 170)


@dataclass(frozen=True)
class Cell:
    row: int
    col: int
    job_id: str | None  # None: no record for this combination
    x: Any
    y: Any
    status: str  # ok | failed | skipped | missing (no record, or its video is gone) | unreadable
    box: tuple[int, int, int, int]  # (left, top, width, height) in the grid's pixels
    params: dict[str, Any] = field(default_factory=dict)  # its values of what varies in the grid besides the axes
    audio: bool = False  # its job's video has sound (the grid itself is silent)


@dataclass(frozen=True)
class Grid:
    name: str
    title: str
    mp4: Path | None
    preview: Path | None
    sidecar: Path
    x: str
    y: str | None
    z: str | None
    z_value: Any
    group: dict[str, Any]  # the values that make this grid one of several: z, and parameters that would collide
    fixed: dict[str, Any]  # parameters with one value, set, across the grid
    defaults: list[str]  # parameters left unset (the pipeline's own default) across the grid
    moving: _Moving  # parameters that vary besides the axes: zipped with x or y, or cell by cell
    x_values: list[Any]
    y_values: list[Any]
    frames: int
    fps: float
    width: int
    height: int
    cells: list[Cell]

    def to_json(self, out_root: Path) -> dict[str, Any]:
        """The sidecar: what the HTML report reads (paths relative to the output root)."""

        def relative(path: Path | None) -> str | None:
            return path.relative_to(out_root).as_posix() if path else None

        return {
            "name": self.name,
            "title": self.title,
            "mp4": relative(self.mp4),
            "preview": relative(self.preview),
            "x": self.x,
            "y": self.y,
            "z": self.z,
            "z_value": self.z_value,
            "group": self.group,
            "fixed": self.fixed,
            "defaults": self.defaults,
            "rows": len(self.y_values) or 1,
            "cols": len(self.x_values),
            "x_values": self.x_values,
            "y_values": self.y_values,
            "x_partners": self.moving.x,
            "y_partners": self.moving.y,
            "x_labels": [_axis_text(self.x, value, self.moving.x, col) for col, value in enumerate(self.x_values)],
            "y_labels": [_axis_text(self.y, value, self.moving.y, row) for row, value in enumerate(self.y_values)],
            "per_cell": self.moving.per_cell,
            "frames": self.frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "cells": [
                {
                    "row": c.row,
                    "col": c.col,
                    "job_id": c.job_id,
                    "x": c.x,
                    "y": c.y,
                    "status": c.status,
                    "box": c.box,
                    "params": c.params,
                    **({"audio": True} if c.audio else {}),
                }
                for c in self.cells
            ],
            **({"audio_note": AUDIO_NOTE} if any(c.audio for c in self.cells) else {}),
        }


#: What a grid's sidecar says where some of its cells' videos have sound.
AUDIO_NOTE = (
    "the grid is silent; the cells marked audio have sound in their own mp4 "
    "(report.html plays one cell's sound on demand)"
)


def grid_sidecar(video: Path) -> tuple[Path, dict[str, Any]] | None:
    """The sidecar of a grid mp4 (``<name>.json`` beside it, naming it) and what it says; None if ``video`` is no grid."""
    sidecar = video.with_suffix(".json")
    try:
        described = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(described, dict) or not isinstance(described.get("cells"), list):
        return None
    if Path(str(described.get("mp4"))).name != video.name:
        return None
    return sidecar, described


@dataclass(frozen=True)
class _Record:
    job_id: str
    status: str
    video: Path | None  # absolute; None when the record names none
    size: tuple[int, int] | None  # (width, height) from the table, if recorded
    params: dict[str, Any]
    audio: bool = False  # its video has sound


def draw_grids(
    out_root: Path,
    x: str,
    y: str | None = None,
    z: str | None = None,
    *,
    where: str | None = None,
    job_ids: list[str] | None = None,
    fit: str = "hold",
    max_width: int = 1920,
    max_height: int = 1080,
    formats: tuple[str, ...] = ("mp4", "webp"),
) -> list[Grid]:
    """Draw the grids of ``x`` (columns) by ``y`` (rows), one per ``z`` value, from the results in ``out_root``.

    ``where`` is a pandas query on the results ("seed == 42", "status == 'ok'"), ``job_ids``
    restricts them to a run's jobs. Only the latest attempt of each job counts. Raises
    InputError (a ValueError), naming what is wrong, for an unknown parameter, a bad query, no results,
    a grid that does not fit the size cap, or two records on one cell.

    Example: ``draw_grids(Path("outputs/demo"), "motion_bucket_id", "noise_aug_strength", "seed")``
    writes ``outputs/demo/grids/grid-x=motion_bucket_id-y=noise_aug_strength-seed=42.mp4`` and one for seed 43.
    """
    out_root = Path(out_root)
    # 1. check the options, then select the records
    if fit not in FITS:
        raise InputError(f"fit={fit!r} is not one of {', '.join(FITS)}")
    unknown = [fmt for fmt in formats if fmt not in ("mp4", *PREVIEW_FORMATS)]
    if unknown or not formats:
        raise InputError(f"formats={formats!r}: choose from mp4, {', '.join(PREVIEW_FORMATS)}")
    records = _select(out_root, where, job_ids)
    names = sorted({name for record in records for name in record.params})
    varying = _varying(records)
    axes = [axis for axis in (x, y, z) if axis is not None]
    for label, axis in zip(("x", "y", "z"), (x, y, z)):
        if axis is not None and axis not in names:
            raise InputError(f"unknown parameter {axis!r} for {label}; parameters that vary: {_listing(varying)}")
    if len(set(axes)) < len(axes):
        raise InputError(f"x={x!r}, y={y!r}, z={z!r} use one parameter on two axes; give each axis its own")

    # 2. the parameters that would put two records on one cell split the grids, like z does
    on_axes: dict[tuple, list[_Record]] = {}
    for record in records:
        on_axes.setdefault(_key(record, axes), []).append(record)
    splits = [
        name
        for name in varying
        if name not in axes and any(len(_values(members, name)) > 1 for members in on_axes.values())
    ]
    group_names = ([z] if z else []) + splits
    groups: dict[tuple, list[_Record]] = {}
    for record in records:
        groups.setdefault(_key(record, group_names), []).append(record)

    # 3. one layout for every grid: axis values and cell box over the whole selection
    x_values = sorted(_values(records, x), key=_order)
    y_values = sorted(_values(records, y), key=_order) if y else [None]
    box = _cell_box(records)
    spec = _AxisSpec(x, y, z, x_values, y_values)

    grids, taken = [], set()
    for group_key in sorted(groups, key=lambda key: tuple(map(_order, key))):
        group = dict(zip(group_names, group_key))
        name = _grid_name(x, y, group, where)
        if name in taken:  # two values with one label (files of one name in two folders)
            name += "-" + _digest(json.dumps(group_key, default=str))
        taken.add(name)
        members = groups[group_key]
        fixed, defaults = {}, []  # every parameter with one value in this grid (z and splits included), set or not
        for key in names:
            values = _values(members, key)
            if key not in (x, y) and len(values) == 1:
                value = values.pop()
                if _known(value):
                    fixed[key] = value
                else:
                    defaults.append(key)
        moving = _moving(members, [key for key in names if key not in (x, y, *fixed, *defaults)], spec)
        title_items = [f"{key}={_label(value)}" for key, value in group.items()]  # an unset one says "default"
        title_items += moving.title_items(x, y)
        title_items += [f"{key}={_label(value)}" for key, value in _title_order(fixed, group_names).items()]
        grids.append(
            _draw(
                out_root, name, title_items, replace(spec, moving=moving), members, box, group, fixed, defaults, fit,
                (max_width, max_height), formats,
            )
        )
    return grids


# -- selecting records -------------------------------------------------------------------------------


def _select(out_root: Path, where: str | None, job_ids: list[str] | None) -> list[_Record]:
    """The latest attempt of each job, filtered; each with its parameters (swept, family, seed, model)."""
    from .query import UnknownName, latest_attempts, rows_where, with_swept_columns

    table = read_results(out_root)
    if table.empty:
        raise InputError(f"no results in {out_root / RESULTS_DIR}: render a manifest into {out_root} first")
    if job_ids is not None:
        table = table[table["job_id"].isin(set(job_ids))]
        if table.empty:
            raise InputError(f"none of the {len(job_ids)} given jobs has a record in {out_root / RESULTS_DIR}")
    table = with_swept_columns(latest_attempts(table))  # swept pipeline options get a column to query
    if where:
        try:
            table = rows_where(table, where)
        except UnknownName as exc:  # told in the grid's terms: the parameters an axis can take
            varying = _varying(_records(table, out_root))
            raise InputError(
                f"where {where!r}: unknown parameter {exc.name!r}; parameters that vary: {_listing(varying)}"
            ) from None
        if table.empty:
            raise InputError(f"no results in {out_root / RESULTS_DIR} match where {where!r}")
    return _records(table, out_root)


def _records(table, out_root: Path) -> list[_Record]:
    """Each row of ``table`` as a record: its video under ``out_root``, its parameters."""
    return [
        _Record(
            job_id=row["job_id"],
            status=row["status"],
            video=out_root / row["video_path"] if isinstance(row["video_path"], str) else None,
            size=(int(row["video_width"]), int(row["video_height"])) if _known(row["video_width"]) else None,
            params=_parameters(row),
            audio="audio_sample_rate" in row and _known(row["audio_sample_rate"]),
        )
        for _, row in table.iterrows()
    ]


def _parameters(row) -> dict[str, Any]:
    """A record's parameters for grids: its family parameters, swept values, seed and model (JSON values)."""
    params: dict[str, Any] = {}
    for column in ("params_json", "sweep_json"):
        if isinstance(row[column], str):
            params.update(json.loads(row[column]))
    if _known(row["seed"]):
        params["seed"] = int(row["seed"])
    if isinstance(row["model"], str):
        params["model"] = row["model"]
    return {name: _hashable(value) for name, value in params.items()}


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _hashable(value: Any) -> Any:
    """Lists and mappings (a swept FreeU setting) as their JSON text, so they can be compared and grouped."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _varying(records: list[_Record]) -> list[str]:
    """The parameters that take more than one value among ``records``, by name."""
    names = sorted({name for record in records for name in record.params})
    return [name for name in names if len(_values(records, name)) > 1]


def _values(records: list[_Record], name: str) -> set:
    return {record.params.get(name) for record in records}


def _key(record: _Record, names: list[str]) -> tuple:
    return tuple(record.params.get(name) for name in names)


def _order(value: Any) -> tuple:
    """Numbers numerically, then text, then missing values."""
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (2, 0.0, "") if value is None else (1, 0.0, str(value))


def _listing(names: list[str]) -> str:
    return ", ".join(names) or "none (every selected record has the same parameters)"


# -- names and labels ----------------------------------------------------------------------------


def _label(value: Any) -> str:
    """A value as a cell or title shows it: 0.02, 180, rocket.png (a path's file name), default (unset: the
    pipeline's own default).

    Only a path is shortened to its last part: text with a slash in it ("a cat / a dog",
    "[bold]x[/bold]", a prompt over two lines) is shown whole.
    """
    if not _known(value):
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and _is_path(value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1] or value
    return str(value)


def _is_path(text: str) -> bool:
    """A file, folder or hub id: a slash, no line break, and no space unless it starts like a path (/, ~, ./, C:\\)."""
    if not ("/" in text or "\\" in text) or "\n" in text or "\r" in text:
        return False
    return not any(char.isspace() for char in text) or bool(re.match(r"(/|~|\.{1,2}[\\/]|[A-Za-z]:[\\/])", text))


def _grid_name(x: str, y: str | None, group: dict[str, Any], where: str | None) -> str:
    """``grid-x=motion_bucket_id-y=noise_aug_strength-seed=42``: safe on any file system, the same every time."""
    parts = [f"x={x}"] + ([f"y={y}"] if y else []) + [f"{key}={_label(value)}" for key, value in group.items()]
    if where:  # a filtered grid does not replace the whole one
        parts.append(f"where={_digest(where)}")
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(["grid", *parts]))
    return name if len(name) <= 120 else f"{name[:100]}-{_digest(name)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _title_order(fixed: dict[str, Any], group_names: list[str]) -> dict[str, Any]:
    """The fixed values the title states after what makes this grid one of several: model and seed, then the
    rest by name. Parameters left unset (the pipeline's own default) are not spelled out: the sidecar lists them."""
    first = [name for name in ["model", "seed"] if name in fixed and name not in group_names]
    return {name: fixed[name] for name in dict.fromkeys(first + sorted(fixed)) if name not in group_names}


@dataclass(frozen=True)
class _Moving:
    """The parameters that vary within one grid besides its axes, as shown: each zipped with an axis (one value
    per axis value, drawn under it), or varying cell by cell (named in the title, kept per cell in the sidecar)."""

    x: dict[str, list[Any]]  # name -> its value at each x value (None where no record of this grid has that x)
    y: dict[str, list[Any]]
    per_cell: list[str]

    def title_items(self, x: str, y: str | None) -> list[str]:
        items = [f"{name} moves with {x}" for name in self.x] + [f"{name} moves with {y}" for name in self.y]
        return items + [f"{name} varies per cell" for name in self.per_cell]


def _moving(records: list[_Record], names: list[str], spec: _AxisSpec) -> _Moving:
    """Sort ``names`` (parameters that vary among ``records``) into those that follow x, those that follow y and
    the rest, from the records themselves: a parameter follows an axis when each axis value has one value of it."""
    moving = _Moving({}, {}, [])
    axes = [(spec.x, spec.x_values, moving.x)] + ([(spec.y, spec.y_values, moving.y)] if spec.y else [])
    for name in names:
        for axis, axis_values, partners in axes:
            along = _function_of(records, axis, name)
            if along is not None:
                partners[name] = [along.get(value) for value in axis_values]
                break
        else:
            moving.per_cell.append(name)
    return moving


def _function_of(records: list[_Record], axis: str, name: str) -> dict[Any, Any] | None:
    """``name``'s one value at each value of ``axis`` among ``records``; None if some axis value has two."""
    along: dict[Any, Any] = {}
    for record in records:
        value = record.params.get(name)
        if along.setdefault(record.params.get(axis), value) != value:
            return None
    return along


def _axis_text(axis: str | None, value: Any, partners: dict[str, list[Any]], index: int) -> str:
    """``max_guidance_scale=3, min_guidance_scale=1``: an axis value and the values that move with it."""
    pairs = [(axis, value), *((name, values[index]) for name, values in partners.items())]
    return ", ".join(f"{name}={_label(at)}" for name, at in pairs)


# -- drawing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisSpec:
    x: str
    y: str | None
    z: str | None
    x_values: list[Any]
    y_values: list[Any]  # [None] without a y axis
    moving: _Moving = field(default_factory=lambda: _Moving({}, {}, []))  # in this grid, besides x and y

    def column_lines(self, col: int) -> list[str]:
        """Column ``col``'s label: its x value, then each zipped parameter's value there."""
        return [_label(self.x_values[col])] + [f"{name}={_label(at[col])}" for name, at in self.moving.x.items()]

    def row_lines(self, row: int) -> list[str]:
        return [_label(self.y_values[row])] + [f"{name}={_label(at[row])}" for name, at in self.moving.y.items()]


@dataclass
class _Clip:
    """A cell's frames, already shrunk to the cell, and their own frame rate."""

    frames: list[np.ndarray]
    fps: float

    def length(self, fps: float) -> int:
        """Frames this clip lasts at the grid's frame rate."""
        return max(1, round(len(self.frames) * fps / self.fps))

    def frame(self, index: int, fps: float, fit: str) -> np.ndarray:
        """The frame shown at grid frame ``index``: resampled by time, then held or looped past the end."""
        length = self.length(fps)
        index = index % length if fit == "loop" else min(index, length - 1)
        return self.frames[min(len(self.frames) - 1, int(index * self.fps / fps + 1e-6))]


def _cell_box(records: list[_Record]) -> tuple[int, int]:
    """One cell size for every video: the largest width and the largest height among them."""
    shown = [record for record in records if record.status == "ok" and record.video and record.video.is_file()]
    sizes = [size for size in map(_video_size, shown) if size]
    if not sizes:
        return EMPTY_CELL
    return max(width for width, _ in sizes), max(height for _, height in sizes)


def _video_size(record: _Record) -> tuple[int, int] | None:
    """(width, height) as recorded, else as ffmpeg reads it; None if unreadable (its cell says so later)."""
    if record.size is not None:
        return record.size
    try:
        return tuple(read_video_info(record.video)["size"])
    except Exception:  # noqa: BLE001 - imageio-ffmpeg raises OSError, RuntimeError, StopIteration...
        return None


def _fit_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled to fit ``box``, aspect kept (the rest of the box is letterboxed)."""
    scale = min(box[0] / size[0], box[1] / size[1])
    return max(1, min(box[0], round(size[0] * scale))), max(1, min(box[1], round(size[1] * scale)))


def _decode(path: Path, box: tuple[int, int]) -> _Clip:
    """Every frame of ``path``, each shrunk (or enlarged) to fit ``box`` as soon as it is decoded."""
    from PIL import Image

    frames, fps = iter_mp4(path)
    shrunk = []
    for frame in frames:
        size = _fit_size((frame.shape[1], frame.shape[0]), box)
        image = Image.fromarray(frame)
        shrunk.append(np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)))
    if not shrunk:
        raise ValueError(f"{path} has no frames")
    return _Clip(shrunk, fps)


@functools.lru_cache(maxsize=None)
def _font(size: int, bold: bool = False):
    from PIL import ImageFont

    path = FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=None)
def _basic(font):
    """``font`` with Pillow's basic layout (no raqm): no shaping or bidi, but it lays out any string."""
    from PIL import ImageFont

    try:
        return font.font_variant(layout_engine=ImageFont.Layout.BASIC)
    except Exception:  # noqa: BLE001 - a bitmap font has no variants
        return font


def _fallbacks(font, text: str):
    """(font, text) to try in turn: as given, with the basic layout, in ASCII with the basic layout."""
    yield font, text
    yield _basic(font), text
    yield _basic(font), text.encode("ascii", "replace").decode("ascii")


def _length(font, text: str) -> float:
    """``text``'s width in pixels in ``font``; never raises (raqm refuses some strings, bitmap fonts non-Latin-1)."""
    for face, shown in _fallbacks(font, text):
        try:
            return face.getlength(shown)
        except Exception:  # noqa: BLE001 - RuntimeError from raqm, UnicodeEncodeError, ValueError...
            continue
    return len(text) * getattr(font, "size", 10) * 0.6


def _text(draw, xy: tuple[float, float], text: str, font, **options) -> None:
    """Draw ``text`` (already ``drawable``), falling back as ``_length`` does; a label no font can draw is left out."""
    for face, shown in _fallbacks(font, text):
        try:
            draw.text(xy, shown, font=face, **options)
            return
        except Exception:  # noqa: BLE001 - as in _length: one label never costs the grid
            continue


def _fit_text(text: str, font, width: float) -> str:
    """``text`` made drawable, cut with an ellipsis where it is wider than ``width`` pixels (a binary search)."""
    text = drawable(text)
    if _length(font, text) <= width:
        return text
    short, long = 0, len(text)  # text[:short] + "…" fits (or short is 0), text[:long] + "…" does not
    while long - short > 1:
        middle = (short + long) // 2
        if _length(font, text[:middle] + ELLIPSIS) <= width:
            short = middle
        else:
            long = middle
    return text[:short] + ELLIPSIS if short else ""


def _break(item: str, font, width: float, room: int) -> list[str]:
    """``item`` over at most ``room`` lines, word by word; the last line holds the rest (cut later if too wide)."""
    if room <= 1 or _length(font, item) <= width:
        return [item]
    lines: list[str] = []
    words = item.split(" ")
    current = words[0]
    for index, word in enumerate(words[1:], 1):
        if _length(font, f"{current} {word}") <= width:
            current = f"{current} {word}"
            continue
        lines.append(current)
        if len(lines) == room - 1:
            return [*lines, " ".join(words[index:])]
        current = word
    return [*lines, current]


def _wrap(title: str | list[str], font, width: float, max_lines: int) -> list[str]:
    """The title's ``key=value`` items packed into lines (an item too wide for one goes on, word by word,
    over the next); the last line kept ends in an ellipsis if cut. Every item is made ``drawable``."""
    items = (title.split(TITLE_SEPARATOR) if isinstance(title, str) else list(title)) or [""]
    lines: list[str] = []
    for item in map(drawable, items):
        if lines and _length(font, lines[-1] + TITLE_SEPARATOR + item) <= width:
            lines[-1] += TITLE_SEPARATOR + item
        else:
            lines += _break(item, font, width, max_lines + 1 - len(lines))
        if len(lines) > max_lines:
            break
    cut = len(lines) > max_lines
    lines = [_fit_text(line, font, width) for line in lines[:max_lines]]
    if cut:
        lines[-1] = _fit_text(lines[-1] + " " + ELLIPSIS, font, width)
    return lines


@dataclass(frozen=True)
class _Layout:
    width: int
    height: int
    cell: tuple[int, int]  # (width, height) of every cell
    left: int  # x of the cells block (row labels included)
    row_labels: int  # width of the row label column
    top: int  # y of the first row of cells
    title_lines: list[str]  # drawable
    font_size: int
    line: int  # line height
    pad: int
    gap: int = 2

    def origin(self, row: int, col: int) -> tuple[int, int]:
        x = self.left + self.row_labels + self.gap + col * (self.cell[0] + self.gap)
        return x, self.top + self.gap + row * (self.cell[1] + self.gap)


def _layout(spec: _AxisSpec, box: tuple[int, int], title: str | list[str], cap: tuple[int, int]) -> _Layout:
    """Place title (a string, or its key=value items), axis labels and cells within ``cap``; cells shrink
    (never labels) to fit."""
    font_size = int(min(max(10, min(cap[0] / 80, cap[1] / 45)), 18))
    font, bold = _font(font_size), _font(font_size, bold=True)
    line, pad, gap = round(font_size * 1.35), max(2, font_size // 3), _Layout.gap
    cap_w, cap_h = cap[0] - cap[0] % 2, cap[1] - cap[1] % 2  # H.264 wants even sides
    cols, rows = len(spec.x_values), len(spec.y_values)
    row_labels = 0
    if spec.y:
        labels = [text for row in range(rows) for text in spec.row_lines(row)]
        widest = max([_length(bold, drawable(spec.y))] + [_length(font, drawable(text)) for text in labels])
        row_labels = min(math.ceil(widest) + 2 * pad, cap_w // 4)

    def place(lines: list[str]) -> _Layout:
        top = len(lines) * line + 2 * pad + (2 + len(spec.moving.x)) * line  # title, x axis name, column labels
        room_w = cap_w - row_labels - (cols + 1) * gap
        room_h = cap_h - top - (rows + 1) * gap - pad
        scale = min(room_w / (cols * box[0]), room_h / (rows * box[1]))
        if scale * min(box) < 8:
            raise InputError(
                f"a {cols} x {rows} grid does not fit in {cap[0]}x{cap[1]} pixels with its labels; "
                "raise max_width/max_height or select fewer values with where"
            )
        scale = min(scale, max(1.0, MIN_CELL_WIDTH / box[0]))
        cell = (int(box[0] * scale), int(box[1] * scale))
        block = row_labels + cols * cell[0] + (cols + 1) * gap
        width = max(block, min(cap_w, 40 * font_size))  # room for a title over a small grid
        height = top + rows * cell[1] + (rows + 1) * gap + pad
        width, height = width + width % 2, height + height % 2
        return _Layout(width, height, cell, (width - block) // 2, row_labels, top, lines, font_size, line, pad)

    # the title's line count and the grid's width depend on each other: settle them in a few rounds
    lines = [drawable(TITLE_SEPARATOR.join(title) if isinstance(title, list) else title)]
    for _ in range(4):
        layout = place(lines)
        wrapped = _wrap(title, font, layout.width - 2 * pad, TITLE_LINES)
        if len(wrapped) == len(lines):
            break
        lines = wrapped
    layout = place(lines)
    return place(_wrap(title, font, layout.width - 2 * pad, len(lines)))


def _static_layer(layout: _Layout, spec: _AxisSpec, cells: list[Cell]) -> np.ndarray:
    """Background, title, axis names, values and empty cells: everything that does not move."""
    from PIL import Image, ImageDraw

    font, bold = _font(layout.font_size), _font(layout.font_size, bold=True)
    image = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    line, pad = layout.line, layout.pad
    for index, text in enumerate(layout.title_lines):
        _text(draw, (pad, pad + index * line), drawable(text), font, fill=TEXT)

    # axis names and values
    title_h = len(layout.title_lines) * line + 2 * pad
    cols_left, _ = layout.origin(0, 0)
    cols_right = layout.origin(0, len(spec.x_values) - 1)[0] + layout.cell[0]
    names_width = cols_right - cols_left
    _text(
        draw,
        ((cols_left + cols_right) / 2, title_h + line / 2),
        _fit_text(spec.x, bold, names_width),
        bold,
        fill=TEXT,
        anchor="mm",
    )
    for col in range(len(spec.x_values)):  # the value, then a line per parameter zipped with x
        center = layout.origin(0, col)[0] + layout.cell[0] / 2
        for index, label in enumerate(spec.column_lines(col)):
            text = _fit_text(label, font, layout.cell[0])
            _text(draw, (center, title_h + line * (1.5 + index)), text, font, fill=DIM, anchor="mm")
    if spec.y:
        labels_right = layout.left + layout.row_labels - pad
        _text(
            draw,
            (labels_right, title_h + line * 1.5),
            _fit_text(spec.y, bold, layout.row_labels - pad),
            bold,
            fill=TEXT,
            anchor="rm",
        )
        for row in range(len(spec.y_values)):  # the value, then those zipped with y: as many lines as the row holds
            labels = spec.row_lines(row)[: max(1, layout.cell[1] // line)]
            first = layout.origin(row, 0)[1] + layout.cell[1] / 2 - (len(labels) - 1) * line / 2
            for index, label in enumerate(labels):
                text = _fit_text(label, font, layout.row_labels - 2 * pad)
                _text(draw, (labels_right, first + index * line), text, font, fill=DIM, anchor="rm")

    # cells: black behind a video (its letterbox), grey and labelled where there is none
    for cell in cells:
        left, top, width, height = cell.box
        right, bottom = left + width - 1, top + height - 1
        draw.rectangle((left, top, right, bottom), fill=CELL if cell.status == "ok" else EMPTY)
        if cell.status != "ok":
            text = _fit_text(cell.status, font, layout.cell[0] - 2)
            color = STATUS_COLORS.get(cell.status, DIM)
            _text(draw, ((left + right) / 2, (top + bottom) / 2), text, font, fill=color, anchor="mm")
    return np.asarray(image)


def _draw(
    out_root: Path,
    name: str,
    title_items: list[str],
    spec: _AxisSpec,
    records: list[_Record],
    box: tuple[int, int],
    group: dict[str, Any],
    fixed: dict[str, Any],
    defaults: list[str],
    fit: str,
    cap: tuple[int, int],
    formats: tuple[str, ...],
) -> Grid:
    # 1. which record goes where; two on one cell differ in no parameter, and that is refused
    by_cell: dict[tuple, _Record] = {}
    for record in records:
        key = (record.params.get(spec.y) if spec.y else None, record.params.get(spec.x))
        if key in by_cell:
            raise InputError(
                f"jobs {by_cell[key].job_id} and {record.job_id} have the same parameters "
                f"({spec.x}={printable(_label(key[1]), 80)}"
                f"{f', {spec.y}={printable(_label(key[0]), 80)}' if spec.y else ''}, and every other) "
                "and would share a cell; select one of them with where or job_ids"
            )
        by_cell[key] = record

    # 2. layout, then each cell's video decoded straight to its size in the grid (a few ffmpeg readers at once)
    title = TITLE_SEPARATOR.join(title_items)  # whole in the sidecar; drawn made drawable, wrapped and cut
    layout = _layout(spec, box, title_items, cap)
    cells, clips = [], {}
    with ThreadPoolExecutor(DECODERS) as pool:
        decoding = {
            (row, col): pool.submit(_decode, record.video, layout.cell)
            for (row, y_value) in enumerate(spec.y_values)
            for (col, x_value) in enumerate(spec.x_values)
            if (record := by_cell.get((y_value, x_value)))
            and record.status == "ok"
            and record.video
            and record.video.is_file()
        }
        for row, y_value in enumerate(spec.y_values):
            for col, x_value in enumerate(spec.x_values):
                record = by_cell.get((y_value, x_value))
                status = record.status if record else "missing"
                if (row, col) in decoding:
                    try:
                        clips[(row, col)] = decoding[(row, col)].result()
                    except Exception:  # noqa: BLE001 - a broken file is a labelled cell, not a crash
                        status = "unreadable"
                elif status == "ok":
                    status = "missing"  # recorded, but its video is gone
                box = (*layout.origin(row, col), *layout.cell)
                shown = [*spec.moving.x, *spec.moving.y, *spec.moving.per_cell]
                params = {name: record.params.get(name) for name in shown} if record else {}
                audio = bool(record and record.audio and status == "ok")
                cells.append(Cell(row, col, record.job_id if record else None, x_value, y_value, status, box, params, audio))

    # 3. compose every frame: the grid runs at the most common frame rate, as long as its longest clip
    counts = Counter(clip.fps for clip in clips.values())
    fps = max(counts, key=lambda rate: (counts[rate], rate)) if counts else 8.0
    frames = max((clip.length(fps) for clip in clips.values()), default=1)
    video = np.empty((frames, layout.height, layout.width, 3), dtype=np.uint8)
    video[:] = _static_layer(layout, spec, cells)
    for (row, col), clip in clips.items():
        left, top = layout.origin(row, col)
        for index in range(frames):
            frame = clip.frame(index, fps, fit)
            dy, dx = (layout.cell[1] - frame.shape[0]) // 2, (layout.cell[0] - frame.shape[1]) // 2
            video[index, top + dy : top + dy + frame.shape[0], left + dx : left + dx + frame.shape[1]] = frame

    # 4. write: mp4, animated preview, sidecar last (it names the others)
    folder = out_root / GRIDS_DIR
    mp4 = folder / f"{name}.mp4" if "mp4" in formats else None
    if mp4:
        write_mp4(video, fps, mp4)
    preview_format = next((fmt for fmt in formats if fmt in PREVIEW_FORMATS), None)
    preview = folder / f"{name}.{preview_format}" if preview_format else None
    if preview:
        _write_preview(video, fps, preview)
    grid = Grid(
        name=name,
        title=title,
        mp4=mp4,
        preview=preview,
        sidecar=folder / f"{name}.json",
        x=spec.x,
        y=spec.y,
        z=spec.z,
        z_value=group.get(spec.z) if spec.z else None,
        group=group,
        fixed=fixed,
        defaults=defaults,
        moving=spec.moving,
        x_values=spec.x_values,
        y_values=spec.y_values if spec.y else [],
        frames=frames,
        fps=fps,
        width=layout.width,
        height=layout.height,
        cells=cells,
    )
    write_atomic(grid.sidecar, lambda path: path.write_text(json.dumps(grid.to_json(out_root), indent=1)))
    return grid


def _write_preview(video: np.ndarray, fps: float, path: Path) -> None:
    """An animated WebP or GIF of the grid, looping, shrunk to PREVIEW_MAX."""
    from PIL import Image

    height, width = video.shape[1:3]
    scale = min(1.0, PREVIEW_MAX[0] / width, PREVIEW_MAX[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    images = [
        Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        if scale < 1
        else Image.fromarray(frame)
        for frame in video
    ]
    options = {"quality": 80} if path.suffix == ".webp" else {}
    write_atomic(
        path,
        lambda scratch: images[0].save(
            scratch,
            format=path.suffix[1:].upper(),
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
            **options,
        ),
    )
