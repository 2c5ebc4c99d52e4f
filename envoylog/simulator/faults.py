"""Faults the simulator can be told to show, at start or while running."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from envoylog.simulator.profiles import InverterFault


@dataclass
class EndpointFault:
    """How one gateway endpoint (or cloud path) misbehaves."""

    status: int | None = None  # answer with this HTTP status instead of the data
    retry_after: str | None = None  # with `status`: a Retry-After header (seconds, or an HTTP date)
    times: int | None = None  # with `status`: answer it this many times (counted down), then the data
    malformed: bool = False  # answer 200 with a body that is not valid JSON
    hang_seconds: float = 0.0  # wait this many real seconds before answering
    body: str | None = None  # answer 200 with exactly this body (a hostile or broken gateway's answer)
    drops: int = 0  # close the connection without an answer this many times (counted down), then answer


@dataclass
class Quirks:
    """Faults that change the values the gateway reports (the model's concern, not HTTP's)."""

    counter_wrap_at: datetime | None = None  # from then on one inverter's 32-bit joule counter has wrapped
    late_whtoday_reset: bool = False  # whToday resets around 00:15 local, and not to zero
    firmware: str | None = None  # a firmware update: /info reports this version instead of the profile's
    booting_until: datetime | None = None  # until then the gateway has just booted: production reads all zero


@dataclass
class Faults:
    """Everything that can be switched on; the defaults are a healthy gateway and cloud."""

    mfa: bool = False  # the account uses multi-factor authentication: both logins ask for a one-time code
    wrong_password: bool = False  # Enlighten and Entrez refuse the credentials
    cloud_down: bool = False  # Enlighten and Entrez answer 503
    endpoints: dict[str, EndpointFault] = field(
        default_factory=dict
    )  # keyed by path, e.g. "/production.json"
    quirks: Quirks = field(default_factory=Quirks)
    # One cloud path misbehaving, keyed by a path of CLOUD_PATHS: a route Enphase has moved or refused.
    cloud_paths: dict[str, EndpointFault] = field(default_factory=dict)

    def set_endpoint(self, path: str, fault: EndpointFault | None) -> None:
        """Make one endpoint (a path without query) misbehave, or heal it with None."""
        if not path.startswith("/"):
            raise ValueError(f"an endpoint fault needs a path such as /production.json, not {path!r}")
        if fault is None:
            self.endpoints.pop(path, None)
        else:
            self.endpoints[path] = fault

    def set_cloud(self, path: str, fault: EndpointFault | None) -> None:
        """Make one cloud path (one of CLOUD_PATHS) misbehave, or heal it with None.

        A status answers that status, a body answers 200 with that body (an HTML page where JSON or a token
        belongs), malformed answers 200 with garbage, hang_seconds holds the answer back, drops resets.
        """
        check_cloud_path(path)
        if fault is None:
            self.cloud_paths.pop(path, None)
        else:
            self.cloud_paths[path] = fault


# The cloud's paths: Enlighten's login, Entrez's token service, Entrez's web login and token page.
CLOUD_PATHS = ("/login/login.json", "/tokens", "/login", "/entrez_tokens")
# What `cloud:PATH=html` answers: the kind of page a moved or walled-off service sends instead of its answer.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Enphase Energy</title></head>"
    "<body><h1>Sign in</h1><p>This page has moved.</p></body></html>\n"
)


def check_cloud_path(path: str) -> None:
    """ValueError unless `path` is one of the cloud's paths."""
    if path not in CLOUD_PATHS:
        raise ValueError(
            f"a cloud fault needs one of the cloud's paths ({', '.join(CLOUD_PATHS)}), not {path!r}"
        )


_SWITCHES = {"mfa", "wrong-password", "cloud-down", "late-reset", "counter-wrap", "booting"}
BOOT_ZERO = timedelta(minutes=5)  # how long firmware 3.x reads all-zero production after a boot


def apply_fault_spec(faults: Faults, spec: str, now: datetime) -> None:
    """Switch on one fault named on the command line: a switch, PATH=STATUS|malformed|hang:SECONDS, or
    cloud:PATH=STATUS|html|malformed|hang:SECONDS."""
    if spec.startswith("cloud:"):
        path, equals, how = spec.removeprefix("cloud:").partition("=")
        if not equals:
            raise ValueError(f"bad fault {spec!r}: give cloud:PATH=STATUS|html|malformed|hang:SECONDS")
        check_cloud_path(path)
        faults.cloud_paths[path] = (
            EndpointFault(body=HTML_PAGE) if how == "html" else _endpoint_fault(spec, how)
        )
        return
    if "=" in spec:
        path, _, how = spec.partition("=")
        if not path.startswith("/"):
            raise ValueError(f"bad fault {spec!r}: the endpoint must be a path such as /production.json")
        faults.endpoints[path] = _endpoint_fault(spec, how)
        return
    if spec not in _SWITCHES:
        known = ", ".join(sorted(_SWITCHES))
        raise ValueError(
            f"unknown fault {spec!r} (known: {known}, PATH=STATUS|malformed|hang:SECONDS, "
            "or cloud:PATH=STATUS|html|malformed|hang:SECONDS)"
        )
    if spec == "mfa":
        faults.mfa = True
    elif spec == "wrong-password":
        faults.wrong_password = True
    elif spec == "cloud-down":
        faults.cloud_down = True
    elif spec == "late-reset":
        faults.quirks.late_whtoday_reset = True
    elif spec == "booting":
        faults.quirks.booting_until = now + BOOT_ZERO
    else:
        faults.quirks.counter_wrap_at = now


def _endpoint_fault(spec: str, how: str) -> EndpointFault:
    if how == "malformed":
        return EndpointFault(malformed=True)
    if how.startswith("hang:"):
        try:
            return EndpointFault(hang_seconds=float(how.removeprefix("hang:")))
        except ValueError:
            pass
    elif how.isdigit() and 100 <= int(how) <= 599:
        return EndpointFault(status=int(how))
    raise ValueError(f"bad fault {spec!r}: after '=' give an HTTP status, 'malformed' or 'hang:SECONDS'")


INVERTER_FAULT = "inverter:"  # how a fault of the site's physics starts on the command line


def parse_inverter_fault(spec: str, timezone: str) -> InverterFault:
    """An inverter fault named on the command line: inverter:N=FACTOR or inverter:N=dead, then optionally
    @TIME (ISO 8601; without an offset, the site's local time) for when it begins instead of installation."""
    number, equals, how = spec.removeprefix(INVERTER_FAULT).partition("=")
    how, at, when = how.partition("@")
    usage = "give inverter:N=FACTOR or inverter:N=dead, optionally @YYYY-MM-DDTHH:MM"
    if not equals or not number.isdigit():
        raise ValueError(f"bad fault {spec!r}: {usage}")
    try:
        factor = 0.0 if how == "dead" else float(how)
    except ValueError:
        raise ValueError(f"bad fault {spec!r}: {usage}") from None
    start = None
    if at:
        try:
            start = datetime.fromisoformat(when)
        except ValueError:
            raise ValueError(f"bad fault {spec!r}: the time after '@' must be ISO 8601") from None
        if start.utcoffset() is None:
            start = start.replace(tzinfo=ZoneInfo(timezone))
    try:
        return InverterFault(int(number), factor, start)
    except ValueError as exc:
        raise ValueError(f"bad fault {spec!r}: {exc}") from None
