"""envoylog: a cron-first logger for the Enphase Envoy / IQ Gateway."""

__version__ = "0.1.0"
