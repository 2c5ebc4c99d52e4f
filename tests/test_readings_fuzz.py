"""The parsers on arbitrary input: only the project's own errors, never a negative counter, never a NaN."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoylog.readings import parse
from envoylog.readings.parse import ParseError

NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
# Documents shaped like the gateway's, with hostile values in the places the parsers look.
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**12), 10**12), st.text(max_size=3)
)
eim = st.fixed_dictionaries(
    {
        "type": st.just("eim"),
        "activeCount": numbers,
        "measurementType": st.sampled_from(["production", "net-consumption", "total-consumption", 7]),
    },
    optional={
        "wNow": numbers,
        "whLifetime": numbers,
        "whToday": numbers,
        "readingTime": numbers,
        "rmsVoltage": numbers,
        "lines": st.lists(
            st.dictionaries(st.sampled_from(["wNow", "whLifetime", "rmsVoltage"]), numbers), max_size=3
        ),
    },
)
production_json = st.fixed_dictionaries(
    {},
    optional={
        "production": st.lists(
            st.one_of(
                eim,
                st.fixed_dictionaries(
                    {"type": st.just("inverters")},
                    optional={
                        "wNow": numbers,
                        "whLifetime": numbers,
                        "readingTime": numbers,
                        "activeCount": numbers,
                    },
                ),
                json_values,
            ),
            max_size=3,
        ),
        "consumption": st.lists(st.one_of(eim, json_values), max_size=3),
        "storage": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("acb")},
                optional={"activeCount": numbers, "wNow": numbers, "whNow": numbers, "percentFull": numbers},
            ),
            max_size=2,
        ),
    },
)
inverter_list = st.lists(
    st.fixed_dictionaries(
        {"serialNumber": st.one_of(st.text(max_size=12), st.integers())},
        optional={"lastReportDate": numbers, "lastReportWatts": numbers, "maxReportWatts": numbers},
    ),
    max_size=5,
)
ct_list = st.lists(
    st.fixed_dictionaries(
        {"eid": numbers},
        optional={
            "timestamp": numbers,
            "activePower": numbers,
            "actEnergyDlvd": numbers,
            "actEnergyRcvd": numbers,
            "voltage": numbers,
            "channels": st.lists(
                st.dictionaries(st.sampled_from(["activePower", "actEnergyDlvd", "eid"]), numbers), max_size=3
            ),
        },
    ),
    max_size=3,
)


def _check(value: Any) -> None:
    """No NaN or infinity anywhere, and no negative lifetime or daily counter."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, tuple | list):
        for item in value:
            _check(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            field_value = getattr(value, name)
            if (
                field_value is not None
                and (name.startswith("wh_") or name == "joules_lifetime")
                and name != "wh_lifetime"
            ):
                assert field_value >= 0, name
            _check(field_value)


PARSERS = [
    lambda data: parse.parse_production_json(data, parse.TimeCheck(NOW)),
    parse.parse_api_v1_production,
    lambda data: parse.parse_inverters(data, parse.TimeCheck(NOW)),
    parse.parse_meters,
    lambda data: parse.parse_meter_readings(data, parse.TimeCheck(NOW)),
    lambda data: parse.parse_device_data(data, parse.TimeCheck(NOW)),
    lambda data: parse.parse_ensemble_inventory(data, parse.TimeCheck(NOW)),
    parse.parse_ensemble_power,
]


@pytest.mark.parametrize("parse", PARSERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_values)
def test_arbitrary_json_raises_only_parse_errors(parse: Any, data: Any) -> None:
    try:
        result = parse(data)
    except ParseError:
        return
    _check(result)


@settings(max_examples=300, deadline=None)
@given(data=production_json)
def test_production_json_shaped_input(data: Any) -> None:
    try:
        result = parse.parse_production_json(data, parse.TimeCheck(NOW))
    except ParseError:
        return
    _check(result)
    if result.inverters is not None and result.inverters.wh_lifetime is not None:
        assert result.inverters.wh_lifetime >= 0


@settings(max_examples=200, deadline=None)
@given(data=inverter_list)
def test_inverter_lists_keep_only_valid_reports(data: Any) -> None:
    try:
        parsed = parse.parse_inverters(data, parse.TimeCheck(NOW))
    except ParseError:
        return  # a number no reading can be (infinite, too large): the answer is broken
    for inverter in parsed:
        _check(inverter)
        assert inverter.reported_at <= NOW.replace(hour=13)  # never more than an hour ahead


@settings(max_examples=200, deadline=None)
@given(data=ct_list)
def test_meter_readings_shaped_input(data: Any) -> None:
    with contextlib.suppress(ParseError):  # a number no reading can be: the answer is broken
        _check(parse.parse_meter_readings(data, parse.TimeCheck(NOW)))


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_info_never_raises_anything_but_parse_errors(body: bytes | str) -> None:
    try:
        info = parse.parse_info(body)
    except ParseError:
        return
    assert info.serial and info.firmware[0].isdigit()


@settings(max_examples=100, deadline=None)
@given(
    serial=st.text(
        st.characters(categories=("L", "N", "Pd", "Pc"), exclude_characters="<&"), min_size=1, max_size=20
    )
)
def test_info_keeps_whatever_serial_the_gateway_reports(serial: str) -> None:
    body = f"<envoy_info><device><sn>{serial}</sn><software>D8.2.4345</software></device></envoy_info>"
    info = parse.parse_info(body)
    assert info.serial == serial
    assert info.firmware == "8.2.4345"


def test_decode_json_names_the_endpoint_and_tells_html_apart() -> None:
    with pytest.raises(ParseError, match="/ivp/meters answered something that is not JSON"):
        parse.decode_json(b'{"truncated": ', "/ivp/meters")
    with pytest.raises(parse.HtmlAnswer, match=r"/production\.json answered an HTML page"):
        parse.decode_json(b"<!DOCTYPE html><html><body>Page Not Found</body></html>", "/production.json")
