"""The command line: `envoylog` and its subcommands."""

from envoylog.cli.app import DemoProfile, SimulatorProfile, app, main

__all__ = ["DemoProfile", "SimulatorProfile", "app", "main"]
