"""`envoylog collect` as cron starts it, every minute: read without building the Typer application.

Typer builds every command's options and checks their values with pydantic, which costs a cron run more CPU
than collecting does. So a command line that is a plain `collect` with its documented options is read here
and run at once: `--every`, `--deadline`, `--textfile` after `collect`, the global `--db`, `--config` and
`-v`/`--verbose` before or after it, each value as its own word or after `=`. Anything else (`--help`, a
typo, a repeated `-v` as `-vv`, a value this reader does not take) goes to Typer, which answers as always;
both run `collect` below. tests/test_cli_usage.py checks that this reader and Typer agree.
"""

from __future__ import annotations

import atexit
import gc
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envoylog.cli.running import Options, echo, run_action
from envoylog.errors import ConfigError

if TYPE_CHECKING:
    from envoylog.collect.run import Notice

COMMAND = "collect"
COMPLETION_VARIABLE = "_ENVOYLOG_COMPLETE"
DEFAULT_DEADLINE_S = 50.0  # collect_all's default: ends a cron run before the next minute's starts
MAX_EVERY_S = 86_400.0  # a day: a longer pause is a typo, and a timer would serve better

# The values read here: not empty and not starting with "-" (whether that is a value is Typer's to decide),
# seconds as plain decimals ("60", "2.5"). Any other spelling goes to Typer, which reads or refuses it.
_VALUE = re.compile(r"[^-].*", re.S)
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
_GLOBAL_OPTIONS = {"--db": _VALUE, "--config": _VALUE}
_COLLECT_OPTIONS = {**_GLOBAL_OPTIONS, "--every": _SECONDS, "--deadline": _SECONDS, "--textfile": _VALUE}
_FLAGS = ("-v", "--verbose")


@dataclass(frozen=True)
class CollectLine:
    """What a plain `collect` command line gives: the global options and collect's own."""

    db: str | None = None
    config: str | None = None
    verbose: bool = False
    every: float | None = None
    deadline: float = DEFAULT_DEADLINE_S
    textfile: Path | None = None


def read_collect_line(args: list[str]) -> CollectLine | None:
    """The options of a plain `collect` command line (without the program's name); None for anything else.

    As with Typer, a value given twice is the last one.
    """
    values: dict[str, str] = {}
    verbose = command = False
    words = iter(args)
    for word in words:
        if word == COMMAND and not command:
            command = True
        elif word in _FLAGS:
            verbose = True
        else:
            name, equals, value = word.partition("=")
            pattern = (_COLLECT_OPTIONS if command else _GLOBAL_OPTIONS).get(name)
            value = value if equals else next(words, "")
            if pattern is None or not pattern.fullmatch(value):
                return None
            values[name] = value
    if not command:
        return None
    return CollectLine(
        db=values.get("--db"),
        config=values.get("--config"),
        verbose=verbose,
        every=float(values["--every"]) if "--every" in values else None,
        deadline=float(values.get("--deadline", DEFAULT_DEADLINE_S)),
        textfile=Path(values["--textfile"]) if "--textfile" in values else None,
    )


def run_plain_collect(args: list[str]) -> None:
    """Run `args` if it is a plain `collect` command line, then exit; return for anything else."""
    line = read_collect_line(args)
    if line is None or COMPLETION_VARIABLE in os.environ:  # a shell asking Typer to complete a word
        return
    if line.every is not None:
        gc.enable()  # a process that runs for days collects its garbage (see envoylog.cli.main)
    else:
        # Nor a collection over the whole heap when it exits: the objects go with the process (atexit runs
        # before the interpreter's last collections, which skip frozen objects).
        atexit.register(gc.freeze)
    options = Options()
    options.update(line.db, line.config, line.verbose)
    code = run_action(options, lambda options: collect(options, line.every, line.deadline, line.textfile))
    raise SystemExit(code)


def collect(options: Options, every: float | None, deadline: float, textfile: Path | None) -> None:
    """Read every configured gateway once (or every `every` seconds) and store what changed."""
    from envoylog.collect.run import HandOffFailed, collect_all, raise_for_runs

    settings = options.settings()
    # `not x > 0` also refuses NaN, which every comparison calls false.
    if not 0 < deadline < math.inf:
        raise ConfigError(f"--deadline must be a positive number of seconds, not {deadline}")
    if every is not None and not 1 <= every <= MAX_EVERY_S:
        raise ConfigError(f"--every must be from 1 to {MAX_EVERY_S:.0f} seconds, not {every}")
    if textfile is not None:
        from envoylog.handoff.textfile import check_textfile

        check_textfile(textfile)  # before the run: a typo in a cron line shows on the first try
    if every is not None:
        from envoylog.collect.every import collect_every

        collect_every(settings, every_s=every, deadline_s=deadline, say=say, textfile=textfile)
        return
    late: HandOffFailed | None = None
    try:
        runs = collect_all(settings, deadline_s=deadline, textfile=textfile)
    except HandOffFailed as failed:
        runs, late = failed.runs, failed
    for run in runs:
        for kind, line in run.notices():
            say(kind, line)
    if late is not None and any(run.error for run in runs):
        say("error", str(late))  # the gateways' error is the exit code; this line is said too
    raise_for_runs(runs)
    if late is not None:
        raise late  # the readings are stored; exit 2 says the textfile is not


def say(kind: Notice, line: str) -> None:
    """A line of a collect: an error or a problem that has lasted (stderr), or one that cleared (stdout)."""
    if kind == "cleared":
        echo(line)
    else:
        echo(f"envoylog: {kind}: {line}", err=True)
