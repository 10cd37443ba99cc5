"""The project's command line: Kedro's own ``kedro run``, with ``--env`` also shaping the pipelines.

A few pipelines take their shape from the configuration (one namespace per value of the
sensitivity grid, per mask source, per study seed; DHAT's oracle only where the data has
true masks). Kedro builds the pipelines before it reads ``--env``, from ``KEDRO_ENV``, so
``kedro run --env cifar10`` alone would shape them from ``conf/base``. This ``run`` is
Kedro's ``run`` command with every option unchanged; it only exports ``--env`` as
``KEDRO_ENV`` first, the variable Kedro itself reads as the environment, so that
``kedro run --env X`` and ``KEDRO_ENV=X kedro run`` are the same run. (Kedro takes a
project's ``cli.py`` commands over its built-in ones.)
"""

from __future__ import annotations

import os
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

__all__ = ["cli", "run"]


@click.group(name="dhat")
def cli() -> None:
    """Commands of the dhat project."""


def _run(**options: Any) -> Any:
    if options.get("env"):
        os.environ["KEDRO_ENV"] = str(options["env"])
    return kedro_run.callback(**options)


run = click.Command(
    name="run",
    callback=_run,
    params=list(kedro_run.params),
    help=f"{kedro_run.help or 'Run the pipeline.'}\n\n--env also decides the shape of the pipelines (it sets KEDRO_ENV).",
    short_help=kedro_run.short_help,
)
cli.add_command(run)
