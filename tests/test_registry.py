"""The endpoint registry and the stored discovery: what the collector asks, and remembers between runs."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from envoylog.readings.discovery import Discovery
from envoylog.readings.endpoints import (
    DEVICE_DATA,
    ENDPOINTS,
    ENSEMBLE_INVENTORY,
    ENSEMBLE_POWER,
    METER_READINGS,
    PRODUCTION_JSON,
    SLOW_EVERY,
    steady_paths,
)
from envoylog.readings.model import GatewayInfo, MeterConfig
from envoylog.readings.sources import Answers

NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
METERED = GatewayInfo("122238082763", "8.2.4345", "800-00654-r08", True, True)

# A discovery as an earlier envoylog stored it (keys it did not know are absent).
STORED_BEFORE = {
    "absent": [],
    "acb": False,
    "api_v1_zero": False,
    "batteries": True,
    "eim_consumption": True,
    "eim_production": True,
    "firmware": "8.2.4345",
    "meters": [
        {"eid": 704643328, "enabled": True, "measurement_type": "production", "phase_count": 3},
        {"eid": 704643584, "enabled": True, "measurement_type": "net-consumption", "phase_count": 3},
    ],
    "polled_at": {DEVICE_DATA: (NOW - timedelta(minutes=2)).isoformat()},
}


def test_every_registered_endpoint_fills_a_field_of_the_answers() -> None:
    fields = {field.name for field in dataclasses.fields(Answers)}
    assert {endpoint.answer for endpoint in ENDPOINTS.values()} == fields
    assert all(path == endpoint.path for path, endpoint in ENDPOINTS.items())


def test_a_discovery_stored_by_an_earlier_version_is_read_and_steers_the_next_run() -> None:
    discovery = Discovery.from_json(STORED_BEFORE)
    assert discovery.firmware == "8.2.4345" and discovery.batteries and not discovery.refused
    assert discovery.has_ct("production") and not discovery.has_ct("total-consumption")
    assert discovery.polled_at == {DEVICE_DATA: NOW - timedelta(minutes=2)}
    # The CTs every run; of the slow ones the battery endpoints (never polled), not device_data (2 min ago).
    assert steady_paths(METERED, discovery, NOW) == [PRODUCTION_JSON, METER_READINGS, ENSEMBLE_INVENTORY]
    later = dataclasses.replace(discovery, polled_at={ENSEMBLE_INVENTORY: NOW, ENSEMBLE_POWER: NOW})
    assert steady_paths(METERED, later, NOW + SLOW_EVERY)[-1] == DEVICE_DATA


def test_a_discovery_goes_to_json_and_back_unchanged() -> None:
    discovery = Discovery(
        firmware="7.6.175",
        meters=(MeterConfig(1, True, "production", 1), MeterConfig(2, False, "net-consumption", 1)),
        api_v1_zero=True,
        absent=("/ivp/ensemble/power",),
        refused=("/ivp/meters/readings",),
        polled_at={DEVICE_DATA: NOW},
    )
    assert Discovery.from_json(json.loads(json.dumps(discovery.to_json()))) == discovery
    assert discovery.describe() == (
        "firmware 7.6.175; CTs: production (enabled), net-consumption (disabled); api v1 zero; "
        "absent: /ivp/ensemble/power; refused: /ivp/meters/readings"
    )
