"""What a gateway's hardware is, learnt from its answers: which CTs, which endpoints, batteries or not.

Discovery reads every endpoint once when a gateway is new or its firmware changed; what it finds decides which
endpoints later runs read (see endpoints.steady_paths) and is stored with the gateway as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from envoylog.readings.model import MeterConfig


@dataclass
class Discovery:
    """What is known of one gateway's hardware and endpoints."""

    firmware: str | None = None  # the firmware a complete discovery was made for; None: make one
    meters: tuple[MeterConfig, ...] = ()  # the CTs of /ivp/meters
    eim_production: bool = False  # production.json has an active production CT entry
    eim_consumption: bool = False  # ... and an active consumption one
    acb: bool = False  # an AC Battery installation (in production.json)
    api_v1_zero: bool = False  # /api/v1/production answers every energy value 0
    batteries: bool = False  # IQ Batteries in the ensemble inventory
    inverters_beyond_device_data: bool = False  # device_data's list is capped and misses inverters
    absent: tuple[str, ...] = ()  # endpoints that answered 404
    refused: tuple[str, ...] = ()  # endpoints refused (401/403) while others answered
    polled_at: dict[str, datetime] = field(default_factory=dict)  # when each slow endpoint last answered

    def has_ct(self, measurement_type: str) -> bool:
        """True when an enabled CT measures this (production, net-consumption, total-consumption)."""
        return any(ct.enabled and ct.measurement_type == measurement_type for ct in self.meters)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Discovery:
        """The discovery stored as JSON (keys that older versions did not write take their defaults)."""
        return cls(
            firmware=data.get("firmware"),
            meters=tuple(MeterConfig(**m) for m in data.get("meters", [])),
            eim_production=bool(data.get("eim_production")),
            eim_consumption=bool(data.get("eim_consumption")),
            acb=bool(data.get("acb")),
            api_v1_zero=bool(data.get("api_v1_zero")),
            batteries=bool(data.get("batteries")),
            inverters_beyond_device_data=bool(data.get("inverters_beyond_device_data")),
            absent=tuple(data.get("absent", ())),
            refused=tuple(data.get("refused", ())),
            polled_at={path: datetime.fromisoformat(at) for path, at in data.get("polled_at", {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, read back by from_json."""
        document = asdict(self)
        document["meters"] = [asdict(m) for m in self.meters]
        document["absent"], document["refused"] = list(self.absent), list(self.refused)
        document["polled_at"] = {path: at.isoformat() for path, at in self.polled_at.items()}
        return document

    def describe(self) -> str:
        """One line about what discovery found, for the event log."""
        cts = [f"{m.measurement_type} ({'enabled' if m.enabled else 'disabled'})" for m in self.meters]
        parts = [f"firmware {self.firmware}", "CTs: " + (", ".join(cts) or "none")]
        for name in ("batteries", "acb", "api_v1_zero", "inverters_beyond_device_data"):
            if getattr(self, name):
                parts.append(name.replace("_", " "))
        if self.absent:
            parts.append("absent: " + ", ".join(self.absent))
        if self.refused:
            parts.append("refused: " + ", ".join(self.refused))
        return "; ".join(parts)
