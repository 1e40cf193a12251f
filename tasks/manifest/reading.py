"""Reading a manifest file: bounded, a regular file, UTF-8 text; and the run's name."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from .limits import TABLE_SUFFIXES, YAML_SUFFIXES, Limits
from .messages import ManifestError, Problem, _cut, _mib, _shown

#: Every run name (a YAML ``name:``, else the manifest's file stem) names a folder, outputs/<name>:
#: a letter or digit, then letters, digits, '_', '.', '-', at most 100 in all (no '..', no '/', no leading dot or dash).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
RUN_NAME_RULE = "1-100 letters, digits, '_', '-' or '.', starting with a letter or digit"


def _read_manifest(path: Path, limits: Limits) -> bytes:
    """The manifest's bytes, or ManifestError: missing, not a regular file, an unknown type, too large."""

    def refuse(message: str) -> ManifestError:
        return ManifestError(path, [Problem(_cut(str(path), 300), None, message)])

    suffix = path.suffix.lower()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise refuse("no such manifest file") from None
    except (OSError, ValueError) as exc:  # too long a name, a NUL byte, no permission on a folder
        raise refuse(f"cannot read the manifest: {_cut(getattr(exc, 'strerror', None) or str(exc))}") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse("is a folder, not a manifest file; give the YAML, CSV or Parquet file itself")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file (a pipe, socket or device); save the manifest to a file and give that")
    if suffix not in YAML_SUFFIXES + TABLE_SUFFIXES:
        raise refuse(f"unknown manifest type {_shown(suffix)}; use .yaml, .csv or .parquet")
    limit = limits.manifest_bytes(suffix)
    kind = "a YAML manifest" if suffix in YAML_SUFFIXES else "a table manifest"

    def too_large(size: str) -> ManifestError:
        return refuse(
            f"is {size}, more than the {_mib(limit)} limit for {kind}; split it into smaller manifests,"
            " or raise the limit with --max-manifest-mb N"
        )

    if info.st_size > limit:
        raise too_large(_mib(info.st_size))
    try:  # not blocking: a file swapped for a pipe since the stat is refused below, not waited on
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(f"cannot read the manifest: {_cut(exc.strerror or str(exc))}") from None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise refuse("is not a regular file (a pipe, socket or device); save the manifest to a file and give that")
        with os.fdopen(handle, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        raise refuse(f"cannot read the manifest: {_cut(exc.strerror or str(exc))}") from None
    finally:
        os.close(handle)
    if len(data) > limit:  # it grew since the stat
        raise too_large(f"more than {_mib(limit)}")
    if suffix in (".parquet", ".pq"):
        return data
    if b"\0" in data:
        offset = data.index(b"\0")
        raise refuse(
            f"is not a text file (a NUL byte at offset {offset:,}: binary data, or UTF-16 text); "
            "a YAML or CSV manifest is UTF-8 text"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}); save it as UTF-8"
        ) from None
    return data


def _run_name(path: Path, given: Any, has_name: bool, problems: list[Problem]) -> str:
    """The run's name (outputs/<name>): ``name:`` where given, else the file's stem; one rule for both."""
    if has_name:
        if not isinstance(given, str) or not RUN_NAME.fullmatch(given):
            problems.append(Problem("name", "name", f"name={_shown(given)} must be a folder name: {RUN_NAME_RULE}"))
        return given if isinstance(given, str) else path.stem
    stem = path.stem
    if not RUN_NAME.fullmatch(stem):
        fix = "rename the file" + (", or add `name: my-run` to it" if path.suffix.lower() in YAML_SUFFIXES else "")
        message = f"the file name {_shown(stem)} names the run (outputs/<name>) and must be a folder name: {RUN_NAME_RULE}"
        problems.append(Problem("name", "name", f"{message}; {fix}"))
    return stem
