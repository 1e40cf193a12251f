"""videosweep: a declarative batch renderer for video diffusion models.

One import name for the project's folders (pyproject.toml maps them): ``videosweep.tasks`` is
tasks/ (the steps as plain functions), ``videosweep.flows`` is flows/ (the Prefect flows and the
command line). docs/ARCHITECTURE.md draws the layers.
"""
