"""The command line: `envoylog` and its subcommands.

`main` runs a plain `collect`, as cron starts it every minute, without building the Typer application
(`cli/cron.py`); every other command line goes to `app`. The names below are imported on first use.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import TYPE_CHECKING, Any

__all__ = ["DemoProfile", "SimulatorProfile", "app", "main"]

if TYPE_CHECKING:
    from envoylog.cli.application import app
    from envoylog.cli.trying import DemoProfile, SimulatorProfile

_LAZY = {
    "app": "envoylog.cli.application",
    "DemoProfile": "envoylog.cli.trying",
    "SimulatorProfile": "envoylog.cli.trying",
}


def main() -> None:
    """Console-script entry point."""
    # Loading the libraries makes a few hundred thousand objects that last as long as the process, and no
    # garbage: the cyclic collector, run over them again and again meanwhile, costs a cron run a tenth of
    # its CPU. A plain collect (seconds at most) does without it; everything else turns it back on.
    gc.disable()
    from envoylog.cli.cron import run_plain_collect

    run_plain_collect(sys.argv[1:])  # exits when the command line was one
    from envoylog.cli.application import app

    # Typer and the commands' modules are loaded too: the collector is back on for the commands, and the
    # short ones that load much more (a report: pandas) turn it off for their run (cli/process.py).
    gc.enable()
    app()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'envoylog.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
