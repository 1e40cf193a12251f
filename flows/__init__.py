"""Prefect flows and the ``videosweep`` command line.

Importing this package sets quiet, offline defaults for Prefect and the Hugging Face libraries
before any of them is imported; a variable already set in the environment wins.
"""

import os

_DEFAULTS = {
    # Prefect: an ephemeral API with no telemetry or UI, WARNING-level logs, and a startup
    # timeout that a cold 2-core machine meets (a fresh server took 24-27 s; the default is 20).
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # ... on the terminal; a flow run's and its task runs' INFO lines (each job's start and end,
    # Prefect's state changes) still go to the API, where a Prefect UI shows them: their loggers
    # pass INFO, the console handler shows WARNING and above only.
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
    "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "DO_NOT_TRACK": "1",
    # Hugging Face: no telemetry, no download progress bars, warnings only when they matter.
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
}
for _name, _value in _DEFAULTS.items():
    os.environ.setdefault(_name, _value)
