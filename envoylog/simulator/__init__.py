"""The simulated gateway and Enphase cloud: try envoylog without hardware, and test it over real HTTP."""

from envoylog.simulator.clock import SimClock
from envoylog.simulator.faults import EndpointFault, Faults, Quirks
from envoylog.simulator.fleet import Fleet, FleetGateway
from envoylog.simulator.latency import Latency, NightlyOutage
from envoylog.simulator.profiles import PROFILES, Profile
from envoylog.simulator.server import Simulator, run_until_stopped
from envoylog.simulator.web import LoggedRequest

__all__ = [
    "PROFILES",
    "EndpointFault",
    "Faults",
    "Fleet",
    "FleetGateway",
    "Latency",
    "LoggedRequest",
    "NightlyOutage",
    "Profile",
    "Quirks",
    "SimClock",
    "Simulator",
    "run_until_stopped",
]
