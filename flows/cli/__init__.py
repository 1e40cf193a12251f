"""``videosweep``: run, plan, validate, models, results, compact, rerun, show, export-manifest, inspect;
submit, status, cancel, worker (queued runs on a Prefect server).

Exit codes: 0 all good; 1 some jobs failed (the others finished); 2 nothing was done because
the input was wrong (the message says where and how to fix it).

One module per group of commands; this one joins them into the app, in the order ``--help``
lists them. Importing it pulls in no torch, diffusers or prefect: each command imports what it
runs, so every ``--help`` is instant.
"""

from __future__ import annotations

import sys

import typer

from videosweep.tasks.text import printable

from . import models, outputs, queue, rerun, results, run

app = typer.Typer(
    help="Declarative batch rendering for video diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _command in (
    run.run,
    run.plan,
    run.validate,
    models.models,
    rerun.rerun,
    results.show,
    rerun.export_manifest,
    results.inspect,
    results.results,
    results.compact,
    outputs.grid,
    queue.submit,
    queue.status,
    queue.cancel,
    queue.worker,
):
    app.command()(_command)


def main(argv: list[str] | None = None) -> None:
    """The console script: the commands, with this process's exit codes, log file and Ctrl-C (flows.process)."""
    from videosweep.flows import process

    process.setup_logging()
    process.handle_interrupts()
    try:
        app(args=argv, prog_name="videosweep")
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback in the log, one line here
        typer.echo(printable(process.report_bug(exc)), err=True)
        sys.exit(1)
