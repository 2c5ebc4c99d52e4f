"""The columns of the report DataFrames: the contract between the queries and everything that shows them."""

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
