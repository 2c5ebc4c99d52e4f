"""What every `envoylog` command shares: the global options, one-line usage errors, errors to exit codes.

The global options (`--db`, `--config`, `-v`) are accepted before and after the subcommand, as scripts and
cron lines write them; the value given last wins. Typer builds a command's options from its signature, so
`global_options` adds the three to each command's signature and records them on the shared `Options`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from envoylog.config import ENVIRONMENT, Settings, load_settings
from envoylog.db.engine import describe_db_error
from envoylog.errors import EXIT_CODES, DatabaseError, EnvoylogError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

PROG = "envoylog"
ERROR_PREFIX = f"{PROG}: error: "
USAGE_EXIT = 2

# Typer re-exports click's BadParameter; its bases are click's usage error and the root of click's errors.
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="URL", help="SQLAlchemy URL of the database [env: ENVOYLOG_DB]."),
]
# A string, not a Path: the config file is checked, with one line for each trouble, when it is read.
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", metavar="FILE", help="TOML config file [env: ENVOYLOG_CONFIG]."),
]
VerboseOption = Annotated[
    bool, typer.Option("-v", "--verbose", help="Tell what happens; tracebacks on errors.")
]


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


def options_of(ctx: typer.Context) -> Options:
    """The invocation's Options (made by the first level that sees them)."""
    return ctx.ensure_object(Options)


def global_options(function: F) -> F:
    """Give a command (or a group's callback) the global options, recorded on the shared Options.

    The function must take `ctx: typer.Context`.
    """
    signature = inspect.signature(function, eval_str=True)
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, annotation, default in (
            ("db", DbOption, None),
            ("config", ConfigOption, None),
            ("verbose", VerboseOption, False),
        )
    ]

    @functools.wraps(function)
    def wrapper(*args: Any, db: str | None, config: str | None, verbose: bool, **kwargs: Any) -> Any:
        options_of(kwargs["ctx"]).update(db, config, verbose)
        return function(*args, **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *added]
    )
    return wrapper  # type: ignore[return-value]


def run_cli(ctx: typer.Context, action: Callable[[Options], T]) -> T:
    """Run `action`, turning the project's errors into one line on stderr and their exit code."""
    options = options_of(ctx)
    try:
        return action(options)
    except EnvoylogError as exc:
        if exc.quiet and not options.verbose:
            raise typer.Exit(exc.status) from None
        fail(str(exc), exc.status, options.verbose)
    except SQLAlchemyError as exc:
        # A database that is locked, read-only, full, damaged or gone, met outside a command's own checks.
        fail(f"database error: {describe_db_error(exc)}", DatabaseError.exit_code, options.verbose)
    except UnicodeDecodeError:
        fail("database error: it holds text that is not UTF-8 (is the file damaged?)", 5, options.verbose)
    except KeyboardInterrupt:
        fail("interrupted", 130, options.verbose)
    except typer.Exit:
        raise
    except Exception as exc:
        fail(f"internal error: {type(exc).__name__}: {exc}", 1, options.verbose)


def fail(message: str, code: int, verbose: bool) -> NoReturn:
    """One line on stderr (the traceback first with -v) and the exit code."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    typer.echo(f"{ERROR_PREFIX}{one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """A message on one line: cron mails it, and a log keeps one line per problem."""
    return " ".join(message.split())


# --- help texts ---


def exit_codes_help() -> str:
    """The exit codes as a list that help keeps as written (click's \\b marks a paragraph not to rewrap)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def environment_help() -> str:
    """The environment variables (command-line options win over them, they over the config file)."""
    width = max(len(name) for name in ENVIRONMENT)
    lines = [f"  {name:<{width}}  {meaning}" for name, meaning in ENVIRONMENT.items()]
    return "\b\nEnvironment (options win over these, these over the config file):\n" + "\n".join(lines)


# --- the group: usage errors on one line ---


class EnvoylogGroup(TyperGroup):
    """A command group whose usage errors are one line, `envoylog: error: ...`, and exit code 2."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; usage errors become one line and exit 2, no args the short help."""
        try:
            result = super().main(
                args=args,
                prog_name=prog_name or PROG,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except _UsageError as exc:
            code = self._usage_error(exc)
        except _ClickException as exc:
            typer.echo(f"{ERROR_PREFIX}{one_line(exc.format_message())}", err=True)  # type: ignore[attr-defined]
            code = int(exc.exit_code)  # type: ignore[attr-defined]
        except typer.Abort:
            typer.echo(f"{ERROR_PREFIX}interrupted", err=True)
            code = 130
        else:
            code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    @staticmethod
    def _usage_error(exc: Exception) -> int:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(short_help(ctx))
            return 0
        message = one_line(exc.format_message())  # type: ignore[attr-defined]
        # Typer checks option values with pydantic, whose messages start with a class of error.
        message = message.replace("Value error, ", "")
        possibilities = getattr(exc, "possibilities", None)
        if possibilities:  # an unknown option: click lists the close ones, best first
            message = f"No such option: {getattr(exc, 'option_name', '')}. Did you mean {possibilities[0]}?"
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"{ERROR_PREFIX}{message}{where}", err=True)
        return USAGE_EXIT


def short_help(ctx: Any) -> str:
    """Usage, the first line of the help and the commands: what `envoylog` alone prints."""
    command = ctx.command
    formatter = ctx.make_formatter()
    command.format_usage(ctx, formatter)
    summary = (command.help or "").split("\n\n")[0].strip()
    if summary:
        formatter.write_paragraph()
        formatter.write_text(summary)
    format_commands = getattr(command, "format_commands", None)
    if format_commands is not None:
        format_commands(ctx, formatter)
    formatter.write_paragraph()
    path = ctx.command_path
    formatter.write_text(f"{path} COMMAND --help tells more; {path} --help lists all.")
    return str(formatter.getvalue()).rstrip("\n")
