"""What every `envoylog` command shares under Typer: the global options and one-line usage errors (a
command's own errors become their exit codes in `cli/running.py`).

The global options (`--db`, `--config`, `-v`) are accepted before and after the subcommand, as scripts and
cron lines write them; the value given last wins. Typer builds a command's options from its signature, so
`global_options` adds the three to each command's signature and records them on the shared `Options`.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from envoylog.cli.running import ERROR_PREFIX, PROG, Options, one_line, run_action
from envoylog.config import ENVIRONMENT
from envoylog.errors import EXIT_CODES

F = TypeVar("F", bound=Callable[..., Any])

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


def run_cli(ctx: typer.Context, action: Callable[[Options], object]) -> None:
    """Run `action` with the invocation's options: errors become one line and their exit code."""
    code = run_action(options_of(ctx), action)
    if code:
        raise typer.Exit(code)


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
