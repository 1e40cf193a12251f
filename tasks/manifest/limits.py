"""What one manifest may ask for (:class:`Limits`), and the kinds of file a manifest may be."""

from __future__ import annotations

from dataclasses import dataclass

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
YAML_SUFFIXES = (".yaml", ".yml")

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one manifest may ask for; past a bound it is refused, before the work the bound guards.

    - ``max_jobs``: jobs the manifest expands to (rows x sweep x zip x seeds, and the rows that
      take other rows' videos), counted before any is built (``--max-jobs``).
    - ``max_manifest_bytes``: the manifest file's size, checked before it is read
      (``--max-manifest-mb``). None: 16 MiB for YAML, which holds 100k rows written out one by
      one (7 MiB with short rows) and costs at most about 20 s and 1 GB to parse (PyYAML builds
      its objects in Python: about 1.3 s and 60 MB per MiB); 256 MiB for CSV and Parquet,
      machine-written tables parsed in C (100k rows with kilobyte prompts fit), read no further
      than ``max_jobs`` rows.
    - ``max_yaml_values``: the values of a YAML document as a reader that expands its aliases
      sees them (a node reached twice counts twice): what stops an alias bomb. None: half the
      YAML size limit (8 Mi values for 16 MiB): a value written out takes at least 2 bytes
      (``1,``), so no file within the size limit reaches it but by expanding aliases.
    - ``max_image_pixels``: an input image's or a video input's frame size (width x height),
      checked from the file's header before it is decoded; 2**26 is 8192 x 8192.
    """

    max_jobs: int = 100_000
    max_manifest_bytes: int | None = None
    max_yaml_values: int | None = None
    max_image_pixels: int = 2**26

    def manifest_bytes(self, suffix: str) -> int:
        """The size limit of a manifest file of this suffix."""
        if self.max_manifest_bytes is not None:
            return self.max_manifest_bytes
        return 16 * MiB if suffix in YAML_SUFFIXES else 256 * MiB

    def yaml_values(self) -> int:
        """The limit on a YAML document's values, aliases expanded."""
        return self.max_yaml_values if self.max_yaml_values is not None else self.manifest_bytes(".yaml") // 2


#: How deep a YAML manifest may nest (its own keys use four levels; pydantic and repr recurse).
MAX_YAML_DEPTH = 32
