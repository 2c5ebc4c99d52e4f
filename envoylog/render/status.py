"""The latest readings, each gateway's status and the auth state as plain text a person reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from envoylog.reports.columns import SITE_KINDS
from envoylog.times import duration_text


def format_latest(document: dict[str, Any]) -> str:
    """`envoylog latest` as a table a person reads."""
    if not document["gateways"]:
        return "nothing stored yet: run `envoylog collect` (or try `envoylog demo`)"
    lines = []
    for gateway in document["gateways"]:
        lines.append(
            f"gateway {gateway['serial']} ({gateway['name']}), firmware {gateway['firmware']}, "
            f"collected {gateway['collected_at'] or 'never'}"
        )
        for kind in SITE_KINDS:
            site = gateway[kind]
            if site is None:
                lines.append(f"  {kind:<16} not measured")
                continue
            energy = (
                f"{site['wh_lifetime'] / 1000:,.1f} kWh lifetime" if site["wh_lifetime"] is not None else ""
            )
            source = f" [{site['source']}]" if "source" in site else ""
            lines.append(f"  {kind:<16} {site['watts']:>10,.1f} W  {energy}{source}  at {site['read_at']}")
        inverters = gateway["inverters"]
        if inverters:
            total = sum(inverter["watts"] for inverter in inverters)
            newest = max(inverter["reported_at"] for inverter in inverters)
            lines.append(
                f"  inverters        {len(inverters)} reporting {total:,.0f} W in all, newest report {newest}"
            )
        for battery in gateway["batteries"]:
            name = battery["serial"] or "AC Battery"
            lines.append(
                f"  battery {name}: {_number(battery['soc_percent'])} %, {_number(battery['watts'])} W"
            )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def format_status(document: dict[str, Any], *, now: datetime, detail: bool = False) -> str:
    """`envoylog status`: one gateway (or, with `detail`, each) in detail; several, a line each and a summary.

    The switch is the number of gateways and nothing else, so that a database always shows the same view:
    one gateway's details, or a fleet's lines (problem ones first, as the document orders them).
    """
    if detail or len(document["gateways"]) <= 1:
        return _status_details(document)
    return _status_fleet(document, now)


STATE_WORDS = {"never_collected": "never collected", "token_expiring": "token expiring"}
PROBLEM_WIDTH = 80  # the rest of a long error is in `status --gateway NAME` and the JSON


def _status_fleet(document: dict[str, Any], now: datetime) -> str:
    """A line per gateway (name, serial, state, age of its last success, problem) and a summary line."""
    table = [("GATEWAY", "SERIAL", "STATE", "LAST SUCCESS", "PROBLEM")]
    for gateway in document["gateways"]:
        problem = gateway["problem"] or ""
        if len(problem) > PROBLEM_WIDTH:
            problem = problem[: PROBLEM_WIDTH - 1] + "…"
        table.append(
            (
                gateway["name"],
                gateway["serial"] or "-",
                _state_words(gateway["state"]),
                _ago(gateway["last_success_at"], now),
                problem,
            )
        )
    # Four columns as wide as their widest cell; the problem last, as long as it is.
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    summary = document["summary"]
    states = ", ".join(
        f"{count:,} {_state_words(state)}" for state, count in summary["states"].items() if count
    )
    newest = summary["last_success_at"]
    last = f"last success {newest} ({_ago(newest, now)})" if newest else "no successful read yet"
    lines.append(
        f"{summary['gateways']:,} gateways: {states}; {last}; database {_size(document['database_bytes'])}"
    )
    return "\n".join(lines)


def _state_words(state: str) -> str:
    return STATE_WORDS.get(state, state)


def _ago(at: str | None, now: datetime) -> str:
    if at is None:
        return "never"
    return f"{duration_text(now - datetime.fromisoformat(at))} ago"


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e9:,.1f} GB" if size >= 1e9 else f"{size / 1e6:,.1f} MB"


def _status_details(document: dict[str, Any]) -> str:
    """Each gateway's block of `label: value` lines, then the database size."""
    lines = []
    for gateway in document["gateways"]:
        error = gateway["last_error"]
        run = gateway["last_run"]
        rows = gateway["rows"]
        change = gateway["last_firmware_change"]
        lines += [
            f"gateway {gateway['serial'] or '(never reached)'} ({gateway['name']})",
            f"  firmware:        {gateway['firmware'] or 'unknown'}",
        ]
        if change is not None:
            lines.append(f"  firmware update: {change['at']} {change['from']} -> {change['to']}")
        # Every time below is when a run ended, so the lines compare at a glance.
        lines += [
            f"  last success:    {gateway['last_success_at'] or 'never'}",
            f"  last run:        {_run_line(run)}",
            f"  last error:      {_error_line(error)}",
            f"  token expires:   {_token_line(gateway)}",
            *_cloud_lines(gateway["cloud"], "  token route:     ", "  token renewal:   "),
            f"  rows stored:     {rows['meter']:,} meter, {rows['inverter']:,} inverter, "
            f"{rows['battery']:,} battery",
        ]
        event = gateway["last_event"]
        if event is not None:
            lines.append(f"  last event:      {event['at']} {event['kind']}: {event['detail']}")
        for breaker in gateway["open_breakers"]:
            count = f"{breaker['timeouts']} timeout" + ("s" if breaker["timeouts"] != 1 else "")
            until = breaker["until"]
            lines.append(f"  skipping:        {breaker['path']} until {until} after {count} in a row")
    if not document["gateways"]:
        lines.append("no gateway collected yet: run `envoylog collect`")
    size = document["database_bytes"]
    lines.append(f"database size: {size / 1e6:,.1f} MB" if size is not None else "database size: unknown")
    return "\n".join(lines)


def _run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never"
    if run["finished_at"] is None:
        return f"running since {run['at']}"
    return f"{run['finished_at']} {run['outcome']}"


def _error_line(error: dict[str, Any] | None) -> str:
    if error is None:
        return "none"
    return f"{error['finished_at'] or error['at']} {error['message']}"


def _token_line(gateway: dict[str, Any]) -> str:
    if gateway["token_expires_at"] is None:
        return "no token stored"
    return f"{gateway['token_expires_at']} ({_days_text(gateway['token_days_left'])})"


def _days_text(days_left: float | None) -> str:
    if days_left is None:
        return "expiry unknown"
    return "expired" if days_left <= 0 else f"{days_left:.1f} days left"


_TOKEN_ORIGINS = {
    "cloud": "from the Enphase cloud",
    "manual": "pasted with `auth set-token`",
    "config": "from the configuration",
}


def format_auth(document: dict[str, Any]) -> str:
    """`envoylog auth status` as a table."""
    if not document["gateways"]:
        return "no gateway known yet: run `envoylog collect` or `envoylog auth login`"
    lines = []
    for gateway in document["gateways"]:
        token, session = gateway["token"], gateway["session"]
        if token["present"]:
            origin = _TOKEN_ORIGINS.get(token["source"], f"from {token['source']}")
            described = (
                f"{token['enphase_user']} token {origin}, expires {token['expires_at']} "
                f"({_days_text(token['days_left'])})"
            )
        else:
            described = "none stored"
        session_text = f"last used {session['last_used_at']}" if session["present"] else "none"
        lines += [
            f"gateway {gateway['serial']} ({gateway['name']})",
            f"  token:   {described}",
            f"  session: {session_text}",
        ]
        lines += _cloud_lines(gateway["cloud"], "  route:   ", None)
        if token["cloud_retry_at"]:
            cause = f": {token['cloud_error']}" if token["cloud_error"] else ""
            lines.append(
                f"  cloud:   login failed {token['cloud_failures']}x{cause}; "
                f"next attempt after {token['cloud_retry_at']}"
            )
    return "\n".join(lines)


def _cloud_lines(cloud: dict[str, Any], route_label: str, failing_label: str | None) -> list[str]:
    """The cloud route that gave the last token (and what failed before it); with `failing_label`, the
    failed attempts since the last token."""
    lines = []
    failing = cloud["failures"] > 0
    if cloud["route"]:
        before = f" (before it: {cloud['error']})" if cloud["error"] and not failing else ""
        lines.append(f"{route_label}{cloud['route']}, tried first{before}")
    if failing and failing_label is not None:
        since = f" since {cloud['failing_since']}" if cloud["failing_since"] else ""
        cause = f": {cloud['error']}" if cloud["error"] else ""
        next_attempt = f"next attempt after {cloud['retry_at']}"
        lines.append(f"{failing_label}failed {cloud['failures']}x{since}{cause}; {next_attempt}")
    return lines
