"""`envoylog simulate` as a process of its own, and the environment that points `envoylog` at it."""

from __future__ import annotations

import os
import subprocess
import sys


def start_simulator(arguments: list[str], db_url: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start `envoylog simulate ARGUMENTS`; return it and an environment with its settings and `db_url`.

    The simulator prints `export NAME=value` lines for the variables that point envoylog at it, then a line
    that starts with "Stop it": read up to there.
    """
    sim = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "envoylog", "simulate", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env = dict(os.environ, ENVOYLOG_DB=db_url)
    assert sim.stdout is not None
    for line in sim.stdout:
        if line.strip().startswith("export "):
            name, _, value = line.strip().removeprefix("export ").partition("=")
            env[name] = value
        if line.startswith("Stop it"):
            break
    return sim, env
