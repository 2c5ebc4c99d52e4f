"""A recorded gateway: one folder of real responses, served as they were captured.

The folder holds one file per endpoint, named after its path (`/ivp/meters/readings` is
`ivp_meters_readings`, `/production.json?details=1` is `production.json_details_1`) and, where present,
`<name>_log.json` with the HTTP status it answered: `{"code": 401, "headers": {...}}`. The Simulator serves
such a model behind the same token, session and Digest flow as its simulated site.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envoylog.simulator.endpoints import Body
from envoylog.simulator.faults import Quirks

_LOG_SUFFIX = "_log.json"
# Stray copies of an endpoint's file, served only when the file itself is missing.
_STRAY_SUFFIXES = (".json", "_1")


@dataclass(frozen=True)
class CapturedProfile:
    """The recorded gateway as its /info describes it."""

    name: str  # the folder's name
    serial: str
    firmware: str  # without the leading letter of <software>, e.g. "7.6.175"
    part_number: str | None
    metered: bool

    @property
    def needs_token(self) -> bool:
        """Firmware 7 and later want a JWT."""
        major = self.firmware.split(".")[0]
        return major.isdigit() and int(major) >= 7

    @property
    def https(self) -> bool:
        """Firmware 7 and later serve HTTPS; older firmware plain HTTP."""
        return self.needs_token


class CapturedModel:
    """Answers every request from the files of one capture folder, with the status each one recorded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            info = (folder / "info").read_bytes()
        except OSError as exc:
            raise ValueError(f"{folder} is not a gateway capture: it has no readable `info` file") from exc
        try:
            root = ET.fromstring(info)  # noqa: S314 - a local file the user pointed at
        except ET.ParseError:
            raise ValueError(f"{folder / 'info'} is not the gateway's XML document") from None
        serial = (root.findtext("device/sn") or "").strip()
        software = (root.findtext("device/software") or "").strip()
        if not serial or not software:
            raise ValueError(f"{folder / 'info'} lacks the serial number or the firmware version")
        self.profile = CapturedProfile(
            name=folder.name,
            serial=serial,
            firmware=software[1:] if software[0].isalpha() else software,
            part_number=(root.findtext("device/pn") or "").strip() or None,
            metered=(root.findtext("device/imeter") or "").strip().lower() == "true",
        )
        seconds = (root.findtext("time") or "").strip()
        # The gateway's clock when it was captured: serving at this time makes its timestamps "now".
        self.captured_at = datetime.fromtimestamp(int(seconds), UTC) if seconds.isdigit() else None

    def render(self, path: str, query: Mapping[str, str], now: datetime, quirks: Quirks) -> Body | None:
        """The recorded answer to GET `path`; None (a 404) when the capture has no file for it."""
        stem = path.strip("/").replace("/", "_")
        if not stem:
            return None
        # Firmware before about 7.6 ignores the query: without a file for it, the plain path's answers.
        stems = [stem + "".join(f"_{key}_{value}" for key, value in query.items()), stem] if query else [stem]
        for name in stems:
            found = self._find(name)
            if found is not None:
                return self._body(found, name)
        return None

    def _find(self, stem: str) -> Path | None:
        for name in (stem, *(stem + suffix for suffix in _STRAY_SUFFIXES)):
            if name.startswith(".") or name.endswith(_LOG_SUFFIX):
                continue
            candidate = self.folder / name
            if candidate.parent == self.folder and candidate.is_file():
                return candidate
        return None

    def _body(self, file: Path, stem: str) -> Body:
        data = file.read_bytes()
        log = _read_log(file.with_name(file.name + _LOG_SUFFIX)) or _read_log(
            file.with_name(stem + _LOG_SUFFIX)
        )
        status = log.get("code") if log else None
        if not isinstance(status, int) or not 100 <= status <= 599:
            status = 200
        headers = log.get("headers") if log else None
        content_type = None
        if isinstance(headers, dict):
            content_type = next(
                (str(v) for k, v in headers.items() if str(k).lower() == "content-type"), None
            )
        return Body(content_type or _sniff(data, stem), data, status)


def _read_log(path: Path) -> dict[str, Any] | None:
    try:
        log = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return log if isinstance(log, dict) else None


def _sniff(data: bytes, stem: str) -> str:
    start = data.lstrip()[:5]
    if stem == "info" or start.startswith(b"<?xml"):
        return "text/xml"
    if start[:1] in (b"{", b"["):
        return "application/json"
    return "text/html; charset=utf-8"
