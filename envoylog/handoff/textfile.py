"""The node_exporter textfile: the latest readings and the run's figures for Prometheus (to be written)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from envoylog.handoff.state import GatewayState


def write_textfile(path: Path, states: Sequence[GatewayState], now: datetime) -> None:
    """Write the metrics of `states` to `path` atomically."""
    raise NotImplementedError("the Prometheus textfile is not written yet")
