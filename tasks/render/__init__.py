"""The render step: jobs -> videos + records, in the process that holds the pipelines.

- ``cache``: the pipeline cache, one per process: a pipeline loads once and serves every job that needs it
- ``start``: a batch of jobs through one pipeline call (or alone, down the memory ladder): frames in memory
- ``export``: frames -> mp4 (its record inside), metrics, the record written; on a thread beside the next render
- ``loop``: the one loop every render goes through (``Renderer``), and a Dask worker's shard

What other steps use of it is imported here; the rest from its module.
"""

from ..run_context import RunContext
from .cache import pipeline_cache
from .loop import render_job
from .start import batches

__all__ = ["RunContext", "batches", "pipeline_cache", "render_job"]
