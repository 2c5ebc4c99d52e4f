"""Running a command's action: the options every command takes, errors to one line and an exit code.

Free of Typer, so that the cron path (`cli/cron.py`) runs `collect` without loading it; `cli/shell.py`
builds the Typer side (the options on each command's signature, the usage errors) on top of this.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from envoylog.config import Settings, load_settings
from envoylog.db.engine import describe_db_error
from envoylog.errors import DatabaseError, EnvoylogError

PROG = "envoylog"
ERROR_PREFIX = f"{PROG}: error: "


@dataclass
class Options:
    """The options every command takes, wherever they stood on the command line."""

    db: str | None = None
    config: Path | None = None
    verbose: bool = False

    def update(self, db: str | None, config: str | None, verbose: bool) -> None:
        """Take the values given at this level of the command line; later levels win."""
        self.db = db if db is not None else self.db
        self.config = Path(config) if config is not None else self.config
        self.verbose = self.verbose or verbose
        configure_logging(self.verbose)

    def settings(self) -> Settings:
        """The validated settings for this invocation."""
        return load_settings(db=self.db, config=self.config)


def configure_logging(verbose: bool) -> None:
    """Log lines on stderr, prefixed like the errors: what happens with -v, warnings only without."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"{PROG}: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def run_action(options: Options, action: Callable[[Options], object]) -> int:
    """Run `action`; its exit code: 0, or its error's, which is said in one line on stderr."""
    try:
        action(options)
    except EnvoylogError as exc:
        if exc.quiet and not options.verbose:
            return exc.status
        return fail(str(exc), exc.status, options.verbose)
    except SQLAlchemyError as exc:
        # A database that is locked, read-only, full, damaged or gone, met outside a command's own checks.
        return fail(f"database error: {describe_db_error(exc)}", DatabaseError.exit_code, options.verbose)
    except UnicodeDecodeError:
        damaged = "database error: it holds text that is not UTF-8 (is the file damaged?)"
        return fail(damaged, DatabaseError.exit_code, options.verbose)
    except KeyboardInterrupt:
        return fail("interrupted", 130, options.verbose)
    except Exception as exc:
        return fail(f"internal error: {type(exc).__name__}: {exc}", 1, options.verbose)
    return 0


def fail(message: str, code: int, verbose: bool) -> int:
    """Say an error in one line on stderr (after its traceback with -v); return its exit code."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    echo(f"{ERROR_PREFIX}{one_line(message)}", err=True)
    return code


def one_line(message: str) -> str:
    """A message on one line: cron mails it, and a log keeps one line per problem."""
    return " ".join(message.split())


def echo(line: str, *, err: bool = False) -> None:
    """Print a line at once (a cron mail, a pipe or a log sees it in order with the errors)."""
    print(line, file=sys.stderr if err else sys.stdout, flush=True)
