"""A CSV or Parquet manifest's entries: one job per row, read no further than the job limit."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .entries import _Entry, _Expansion
from .limits import Limits
from .messages import Problem, _cut, _mib
from .reading import _run_name


def _read_table(path: Path, data: bytes, limits: Limits) -> _Expansion:
    import pandas as pd

    where = _cut(str(path), 300)
    problems: list[Problem] = []
    name = _run_name(path, None, False, problems)
    csv = path.suffix.lower() == ".csv"

    def too_many(rows: str) -> _Expansion:
        message = (
            f"has {rows}, more than the limit of {limits.max_jobs:,} jobs (one per row); split it into smaller tables,"
            " or raise the limit with --max-jobs N"
        )
        return _Expansion(name, problems=problems + [Problem(where, None, message)])

    try:
        if csv:
            frame = pd.read_csv(io.BytesIO(data), nrows=limits.max_jobs + 1)  # never more rows than the limit
            if len(frame) > limits.max_jobs:
                lines = data.count(b"\n")
                return too_many(f"{lines:,} lines")
        else:
            import pyarrow.parquet as pq

            metadata = pq.ParquetFile(io.BytesIO(data)).metadata  # the footer only: counts before any column is read
            if metadata.num_rows > limits.max_jobs:
                return too_many(f"{metadata.num_rows:,} rows")
            unpacked = sum(metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups))
            limit = limits.manifest_bytes(path.suffix.lower())
            if unpacked > limit:
                message = (
                    f"holds {_mib(unpacked)} once decompressed, more than the {_mib(limit)} limit for a table manifest;"
                    " split it, or raise the limit with --max-manifest-mb N"
                )
                return _Expansion(name, problems=problems + [Problem(where, None, message)])
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many types for an unreadable table
        unreadable = Problem(where, None, f"cannot read the table: {_cut(str(exc), 300)}")
        return _Expansion(name, problems=problems + [unreadable])
    if not len(frame):
        return _Expansion(name, problems=problems + [Problem(where, None, "the table has no rows")])
    if problems:
        return _Expansion(name, problems=problems)
    line = 2 if csv else 0

    def entries() -> Iterator[_Entry]:
        for index, record in enumerate(frame.to_dict(orient="records")):
            values = {key: _plain(value) for key, value in record.items() if not _is_missing(value)}
            origin = f"line {index + line}" if line else f"row {index}"
            yield _Entry(values, origin, {})

    return _Expansion(name, entries())


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy scalars to Python values; integral floats (an int column with gaps) back to int."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
