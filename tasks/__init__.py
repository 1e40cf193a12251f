"""The steps of a videosweep run as plain functions: manifest, models, render, video, results.

Nothing here imports Prefect; ``flows/`` wraps these functions into flows and tasks.
"""
