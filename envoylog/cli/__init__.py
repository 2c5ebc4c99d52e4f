"""The command line: `envoylog` and its subcommands."""

from envoylog.cli.app import app, main
from envoylog.cli.trying import DemoProfile, SimulatorProfile

__all__ = ["DemoProfile", "SimulatorProfile", "app", "main"]
