"""`envoylog check`'s output: a line per problem for cron, or the whole state as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from envoylog.times import iso_z

if TYPE_CHECKING:
    from envoylog.check.watch import CheckResult, Problem


def check_document(result: CheckResult, now: datetime) -> dict[str, Any]:
    """Every open problem, the news (a firmware update) and the problems that cleared, for programs."""
    return {
        "checked_at": iso_z(now),
        "problems": [_entry(p) for p in result.problems],
        "news": [_entry(p) for p in result.news],
        "cleared": result.cleared,
    }


def _entry(problem: Problem) -> dict[str, Any]:
    return {
        "gateway": problem.gateway,
        "serial": problem.serial,
        "kind": problem.finding.kind,
        "subject": problem.finding.subject or None,
        "since": iso_z(problem.finding.since),
        "message": problem.finding.text,
        "said": problem.said,
    }
