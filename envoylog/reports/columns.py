"""Daily yield, per-inverter energy and power curves as DataFrames (SPEC section 6). The SQL does the work.

A report reads a handful of rows per series and day, whatever the polling rate: lifetime counters are read off
at each local midnight with two index lookups (the last row at or before it, the first at or after it) and
interpolated linearly between them. Only a day whose counters do not add up (a drop, a jump, a change of
source, a missing counter) is examined row by row, with a window over that day's rows alone; there a power
estimate replaces what the counter cannot tell. Peak power is a top-1 lookup per day over the (series, time)
key, and coverage a count of five-minute buckets holding a run, made exact for the days with an empty one.

Rows are stored only when a reading changes, so between two rows a reading held its value while the logger
was running; across a silence of the logger (no successful run) a power holds for 15 minutes at most.
"""

from __future__ import annotations

DAILY_COLUMNS = [
    "gateway",
    "day",
    "production_wh",
    "consumption_wh",
    "import_wh",
    "export_wh",
    "self_consumed_wh",
    "peak_watts",
    "peak_at",
    "coverage",
    "notes",
]


INVERTER_COLUMNS = ["gateway", "day", "serial", "wh", "basis"]


CURVE_COLUMNS = ["gateway", "at", "production_watts", "consumption_watts", "net_watts"]
# The site's channels, as `latest` and `status` show them.
SITE_KINDS = ("production", "consumption", "net_consumption")
