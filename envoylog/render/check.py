"""`envoylog check`'s output: a line per problem for cron, or the whole state as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from envoylog.times import iso_z

if TYPE_CHECKING:
    from envoylog.check.watch import CheckResult


def check_document(result: CheckResult, now: datetime) -> dict[str, Any]:
    """Every open problem and every one that cleared, for programs."""
    return {
        "checked_at": iso_z(now),
        "problems": [
            {
                "gateway": p.gateway,
                "serial": p.serial,
                "kind": p.finding.kind,
                "subject": p.finding.subject or None,
                "since": iso_z(p.finding.since),
                "message": p.finding.text,
                "said": p.said,
            }
            for p in result.problems
        ],
        "cleared": result.cleared,
    }
