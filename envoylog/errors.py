"""The project's exceptions; each carries the exit code the command line ends with (see `envoylog --help`)."""

from __future__ import annotations

from typing import ClassVar


class EnvoylogError(Exception):
    """Base of every error envoylog reports to its user: one line, one exit code."""

    exit_code: ClassVar[int] = 1
    # Transient, or said already: the exit code without the line (cron mails only what a job prints).
    quiet: bool = False

    @property
    def status(self) -> int:
        """The exit code this error ends the command with."""
        return self.exit_code

    def _render_traceback_(self) -> list[str]:
        """In a notebook, one line like the command's: the message says what to do, a traceback does not."""
        return [f"envoylog: error: {self}"]


class ConfigError(EnvoylogError):
    """Bad usage or configuration: a bad host, database URL, config file or option."""

    exit_code = 2


class AuthError(EnvoylogError):
    """Authentication needs the user: bad credentials, MFA without a token, a token that cannot be renewed."""

    exit_code = 3
    # The cloud was down or slow, not refusing: like an unreachable gateway, said once it lasts.
    transient: bool = False


class NoData(ConfigError):
    """The database holds nothing for what was asked (a notebook stops here with this message)."""


class GatewayError(EnvoylogError):
    """The gateway is unreachable or answers errors only."""

    exit_code = 4


class DatabaseError(EnvoylogError):
    """The database cannot be opened, migrated, read or written."""

    exit_code = 5


class LockedError(EnvoylogError):
    """Another collect is polling the gateway (or, for `demo --days`, holds the database)."""

    exit_code = 6


class ProblemsFound(EnvoylogError):
    """`envoylog check` found at least one open problem (its lines are its output)."""

    exit_code = 7
    quiet = True


EXIT_CODES: dict[int, str] = {
    0: "success (also when nothing changed)",
    1: "internal error",
    2: "usage or configuration error",
    3: "authentication needs the user (bad credentials, MFA account without a token, token not renewable)",
    4: "gateway unreachable or answering errors only",
    5: "database error",
    6: "another collect is polling the gateway",
    7: "check found a problem (said, or said already today)",
}
