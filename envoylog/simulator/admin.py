"""The simulator's admin API as JSON: faults and quirks in and out, the request log, times given as text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from envoylog.simulator.faults import EndpointFault, Faults, Quirks, check_cloud_path
from envoylog.simulator.web import LoggedRequest, Request

_SWITCHES = ("mfa", "wrong_password", "cloud_down")


def faults_to_json(faults: Faults) -> dict[str, Any]:
    """The faults as a JSON-ready dict."""
    quirks = asdict(faults.quirks)
    for name in ("counter_wrap_at", "booting_until"):
        if quirks[name] is not None:
            quirks[name] = iso(quirks[name])
    return {
        "mfa": faults.mfa,
        "wrong_password": faults.wrong_password,
        "cloud_down": faults.cloud_down,
        "endpoints": {path: asdict(fault) for path, fault in faults.endpoints.items()},
        "quirks": quirks,
        "cloud": {path: asdict(fault) for path, fault in faults.cloud_paths.items()},
    }


def merge_faults(faults: Faults, data: Mapping[str, Any], now: datetime) -> None:
    """Merge a JSON change into `faults` in place; ValueError (before any change) when it is not valid."""
    unknown = set(data) - {*_SWITCHES, "endpoints", "quirks", "cloud"}
    if unknown:
        raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    switches = {name: _bool(data[name], name) for name in _SWITCHES if name in data}
    endpoints = {path: _endpoint_fault(path, spec) for path, spec in _object(data, "endpoints").items()}
    cloud = {path: _cloud_fault(path, spec) for path, spec in _object(data, "cloud").items()}
    quirks = _quirk_changes(_object(data, "quirks"), now)
    for name, value in switches.items():
        setattr(faults, name, value)
    for path, fault in endpoints.items():
        if fault is None:
            faults.endpoints.pop(path, None)
        else:
            faults.endpoints[path] = fault
    for path, fault in cloud.items():
        faults.set_cloud(path, fault)
    for name, value in quirks.items():
        setattr(faults.quirks, name, value)


def _cloud_fault(path: str, spec: Any) -> EndpointFault | None:
    check_cloud_path(path)
    return _endpoint_fault(path, spec)


def _endpoint_fault(path: str, spec: Any) -> EndpointFault | None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"an endpoint fault needs a path such as /production.json, not {path!r}")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"the fault of {path} must be an object or null")
    unknown = set(spec) - {"status", "retry_after", "times", "malformed", "hang_seconds", "body", "drops"}
    if unknown:
        raise ValueError(f"unknown endpoint fault field(s): {', '.join(sorted(unknown))}")
    status = spec.get("status")
    if status is not None and not (is_number(status) and status == int(status) and 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code (100-599)")
    hang = spec.get("hang_seconds", 0.0)
    if not is_number(hang) or hang < 0:
        raise ValueError("hang_seconds must be a number of seconds, not negative")
    malformed = _bool(spec.get("malformed", False), "malformed")
    body = spec.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body must be a string")
    drops = spec.get("drops", 0)
    if not is_number(drops) or drops < 0 or drops != int(drops):
        raise ValueError("drops must be a whole number of requests, not negative")
    retry_after = spec.get("retry_after")
    if retry_after is not None and not isinstance(retry_after, str):
        raise ValueError('retry_after must be a string: seconds ("30") or an HTTP date')
    times = spec.get("times")
    if times is not None and (not is_number(times) or times < 0 or times != int(times)):
        raise ValueError("times must be a whole number of requests, not negative")
    return EndpointFault(
        status=None if status is None else int(status),
        retry_after=retry_after,
        times=None if times is None else int(times),
        malformed=malformed,
        hang_seconds=hang,
        body=body,
        drops=int(drops),
    )


def _quirk_changes(data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(data) - {item.name for item in fields(Quirks)}
    if unknown:
        raise ValueError(f"unknown quirk(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    for name in ("counter_wrap_at", "booting_until"):
        if name in data:
            value = data[name]
            changes[name] = None if value is None else parse_time(value, now)
    if "late_whtoday_reset" in data:
        changes["late_whtoday_reset"] = _bool(data["late_whtoday_reset"], "late_whtoday_reset")
    if "firmware" in data:
        firmware = data["firmware"]
        if firmware is not None and (not isinstance(firmware, str) or not firmware[:1].isdigit()):
            raise ValueError("firmware must be a version such as 8.3.5433, or null")
        changes["firmware"] = firmware
    return changes


def parse_time(value: Any, now: datetime) -> datetime:
    """An aware time from JSON: an ISO 8601 string with an offset, or "now" (simulated)."""
    if value == "now":
        return now
    if not isinstance(value, str):
        raise ValueError("a time must be an ISO 8601 string or 'now'")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"the time {value!r} needs a UTC offset, e.g. Z or +01:00")
    return parsed.astimezone(UTC)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _object(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object")
    return value


def json_object(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        data = request.json()
    except ValueError:
        raise ValueError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def logged_to_json(entry: LoggedRequest) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "service": entry.service,
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
        "account": entry.account,
    }


def iso(moment: datetime) -> str:
    # To the microsecond, unlike the collector's times: the simulated clock is saved and read back through it.
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
