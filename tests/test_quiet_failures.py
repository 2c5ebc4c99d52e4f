"""Under cron every printed line is a mail: a gateway failure is said when it has become real, and once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from envoylog.collect.run import GatewayRun, RunsFailed, raise_for_runs
from envoylog.config import CollectSettings
from envoylog.simulator.faults import EndpointFault
from tests.conftest import Site


def later(site: Site, minutes: float) -> GatewayRun:
    site.sim.clock.advance(timedelta(minutes=minutes))
    return site.collect()


def test_an_outage_is_quiet_until_it_lasts_then_said_once_and_its_end_said(site: Site) -> None:
    assert site.collect().error is None
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))  # the nightly outage, a reboot
    transient = later(site, 1)
    assert transient.error is not None and transient.error.quiet and transient.error.status == 4
    assert later(site, 13).error.quiet  # type: ignore[union-attr]
    crossing = later(site, 2)  # 16 minutes without a successful read: now it is worth a mail
    assert crossing.error is not None and not crossing.error.quiet
    assert str(crossing.error).startswith("no successful read for 16 min: ")
    assert "/info answered HTTP 503" in str(crossing.error)
    for _ in range(3):
        assert later(site, 1).error.quiet  # type: ignore[union-attr]  # said already: not every minute
    site.sim.clear_faults()
    back = later(site, 1)
    assert back.error is None
    assert back.recovered == "gateway home: read again after 20 min without a successful read"
    assert later(site, 1).recovered is None  # said once


def test_the_quiet_window_is_configurable(site: Site) -> None:
    settings = replace(site.settings(), collect=CollectSettings(quiet_minutes=2))
    assert site.collect(settings).error is None
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect(settings).error.quiet  # type: ignore[union-attr]
    site.sim.clock.advance(timedelta(minutes=2))
    assert not site.collect(settings).error.quiet  # type: ignore[union-attr]


def test_a_gateway_never_read_says_every_failure(site: Site) -> None:
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    assert site.collect().error is not None
    first = later(site, 1)
    assert first.error is not None and not first.error.quiet  # being set up: somebody is watching


def test_a_quiet_failure_beside_a_said_one_is_named_with_it_and_keeps_the_worst_exit_code() -> None:
    quiet, said = GatewayRun("home"), GatewayRun("barn")
    quiet.error, said.error = RunsFailed("gone for a minute", 4), RunsFailed("wrong password", 3)
    quiet.error.quiet = True
    with pytest.raises(RunsFailed) as info:
        raise_for_runs([quiet, said])
    assert (str(info.value), info.value.status, info.value.quiet) == (
        "gateway barn: wrong password",
        4,
        False,
    )
    with pytest.raises(RunsFailed) as info:
        raise_for_runs([quiet, GatewayRun("shed")])
    assert (str(info.value), info.value.status, info.value.quiet) == (
        "gateway home: gone for a minute",
        4,
        True,
    )


def test_a_gateway_that_does_not_answer_is_timed_by_its_clock_of_the_last_answer(site: Site) -> None:
    # This machine's clock is a month off (a Raspberry Pi without its network time): the gateway's clock
    # times the runs, also the one that gets no answer at all, so the outage is a minute old, not a month.
    site.sim.clock.set(site.sim.clock.now() - timedelta(days=30))
    assert site.collect(clock=lambda: datetime.now(UTC)).clock_offset is not None
    site.sim.set_endpoint_fault("/info", EndpointFault(drops=2))
    silent = site.collect(clock=lambda: datetime.now(UTC))
    assert silent.error is not None and silent.error.quiet
    first, second = (at for (at,) in site.query("SELECT started_at FROM runs ORDER BY id"))
    gap = second - first
    assert abs(gap.total_seconds() if isinstance(gap, timedelta) else gap) < 60  # both by the gateway's clock
