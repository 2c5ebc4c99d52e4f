"""Tables, as SQLAlchemy Core `Table`s on one `METADATA`. The schema itself is made by the Alembic migrations.

Core, not the ORM: nothing here maps rows to objects, and a cron `collect` does not load the ORM's modules.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from envoylog.db.types import UtcDateTime

# Stable constraint names, so that migrations can name what they change on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

METADATA = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for the big tables.
BigId = Integer().with_variant(BigInteger(), "postgresql")


def _gateway_id(*, nullable: bool = False, primary_key: bool = False) -> Column[int]:
    """The column that ties a row to its gateway (and goes with it)."""
    return Column(
        "gateway_id",
        Integer,
        ForeignKey("gateways.id", ondelete="CASCADE"),
        nullable=nullable,
        primary_key=primary_key,
    )


# A gateway envoylog has talked to, identified by the serial its /info reports.
GATEWAYS = Table(
    "gateways",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("serial", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False),  # the config's gateway name ("default", "home", ...)
    Column("firmware", String(40)),
    Column("part_number", String(40)),
    Column("metered", Boolean),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    # What discovery found (endpoints, CTs) for `firmware`, as JSON; redone when the firmware changes.
    Column("discovery", Text),
    # The gateway's clock minus this machine's, when they disagreed the last time it answered: a run that
    # gets no answer at all is timed by it too, so the run log keeps one clock.
    Column("clock_offset_s", Double),
)

# A gateway's token or session cookie, with its expiry; and the cloud's back-off after failures.
AUTH = Table(
    "auth",
    METADATA,
    Column("id", Integer, primary_key=True),
    _gateway_id(),
    Column("kind", String(16), nullable=False),  # "token" | "session"
    Column("secret", Text),
    Column("source", String(16)),  # token: "cloud" | "manual" | "config"
    Column("enphase_user", String(16)),
    Column("issued_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("cloud_failures", Integer, nullable=False, default=0, server_default="0"),
    Column("cloud_retry_at", UtcDateTime),
    # Why the last cloud attempt failed, one line without secrets: the back-off's later messages repeat it.
    Column("cloud_error", Text),
    # The cloud route that last gave a token ("enlighten" | "entrez-web"): tried first next time.
    Column("cloud_route", String(32)),
    # The first failed cloud attempt since the last token: a renewal failing for a day is said once.
    Column("cloud_failing_since", UtcDateTime),
    UniqueConstraint("gateway_id", "kind"),
)

# One collect run of one gateway: when, how it ended, what it cost and stored.
RUNS = Table(
    "runs",
    METADATA,
    Column("id", BigId, primary_key=True),
    _gateway_id(nullable=True),
    Column("gateway_name", String(100), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("outcome", String(16), nullable=False),  # "running" | "ok" | "partial" | "failed"
    Column("requests", Integer, nullable=False, default=0),
    Column("cloud_requests", Integer, nullable=False, default=0),
    Column("rows_added", Integer, nullable=False, default=0),
    Column("error", Text),
    Index("ix_runs_gateway_started", "gateway_id", "started_at"),
    # Two partial indexes more: see with_partial_indexes().
)


def with_partial_indexes() -> MetaData:
    """METADATA with every table and the run log's partial indexes, which only Alembic reads.

    A partial index's condition is an option of each database, and SQLAlchemy checks such an option by loading
    that database's dialect, every driver of it: in the table itself, they made a cron collect on SQLite load
    PostgreSQL's. The migrations made the indexes; Alembic compares the migrations with this
    (migrations/env.py, and tests/test_database.py, which keeps the two equal).
    """
    # The readings' tables join METADATA where they are defined; the schema's makers need every table.
    import envoylog.db.meters  # noqa: F401 - meters.py and stored.py import this module

    if "ix_runs_gateway_error" in {index.name for index in RUNS.indexes}:
        return METADATA
    # `status` looks up each gateway's newest run with an error: without this index, a gateway that never
    # failed has the whole of its run log walked back to find none.
    Index(
        "ix_runs_gateway_error",
        RUNS.c.gateway_id,
        RUNS.c.started_at,
        sqlite_where=text("error IS NOT NULL"),
        postgresql_where=text("error IS NOT NULL"),
    )
    # Runs that never learned their gateway (failed before /info, or still running) go by the configured
    # name: `status` finds their names, and each name's newest, among them alone.
    Index(
        "ix_runs_unattributed",
        RUNS.c.gateway_name,
        RUNS.c.started_at,
        sqlite_where=text("gateway_id IS NULL"),
        postgresql_where=text("gateway_id IS NULL"),
    )
    return METADATA


# Something that changed about a gateway: a firmware update, what discovery found.
EVENTS = Table(
    "events",
    METADATA,
    Column("id", Integer, primary_key=True),
    _gateway_id(),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),  # "firmware_changed" | "discovered"
    Column("detail", Text, nullable=False),
    Index("ix_events_gateway_at", "gateway_id", "at"),
)

# Which collector polls a gateway now: several collectors share a database, never a gateway. Times are
# milliseconds since the epoch by the database's clock (PostgreSQL's, or SQLite's machine), so collectors on
# machines whose clocks disagree still agree on when a claim ends.
CLAIMS = Table(
    "claims",
    METADATA,
    Column("gateway_name", String(100), primary_key=True),  # the config's name
    Column("holder", String(200), nullable=False),  # "host pid N nonce"
    Column("claimed_ms", BigInteger, nullable=False),
    Column("until_ms", BigInteger, nullable=False),  # a collector that dies lets go at this time
    Column("done_ms", BigInteger),  # when its holder finished polling it
)

# An endpoint that timed out, skipped until `open_until` so that it does not eat every run. Each timeout in
# a row doubles the pause; an answer (of any kind) ends it.
BREAKERS = Table(
    "breakers",
    METADATA,
    _gateway_id(primary_key=True),
    Column("path", String(100), primary_key=True),
    Column("timeouts", Integer, nullable=False),  # timeouts in a row
    Column("open_until", UtcDateTime),  # not asked before this time
    Column("updated_at", UtcDateTime, nullable=False),
)

# A problem a run has seen, since when, and when it was said (a line, so under cron a mail). A problem is
# said once, when it has lasted past its threshold; later runs stay silent about it, and the run that finds
# it gone says so once and deletes the row.
PROBLEMS = Table(
    "problems",
    METADATA,
    _gateway_id(primary_key=True),
    Column("kind", String(32), primary_key=True),  # "endpoint" | "token" | "discovery" ...
    Column("subject", String(100), primary_key=True),  # an endpoint's path, or ""
    Column("since", UtcDateTime, nullable=False),
    Column("said_at", UtcDateTime),
    Column("seen_at", UtcDateTime, nullable=False),  # the last run that saw it
    Column("detail", Text),  # the latest failure, one line without secrets
)

# A problem `envoylog check` found, and when it said it: once a day at most, a line when it clears.
CHECK_FINDINGS = Table(
    "check_findings",
    METADATA,
    # The config's name: a configured gateway that never answered has no row in gateways, and is checked.
    Column("gateway", String(100), primary_key=True),
    Column("kind", String(32), primary_key=True),  # "stale" | "inverter_silent" | ...
    Column("subject", String(100), primary_key=True),  # an inverter's serial, a day, or ""
    Column("since", UtcDateTime, nullable=False),
    Column("said_at", UtcDateTime),
    Column("seen_at", UtcDateTime, nullable=False),  # the last check that found it
    Column("line", Text, nullable=False),  # what was said, for the line that says it cleared
)

# A gateway session opened or a token taken by a collector: `check` counts them to find a storm.
AUTH_LOG = Table(
    "auth_log",
    METADATA,
    Column("id", Integer, primary_key=True),
    _gateway_id(),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),  # "session" | "token"
    Index("ix_auth_log_gateway_at", "gateway_id", "at"),
)


# --- the series and their readings ---

# One time series of a gateway: a site channel (in total or one phase), an inverter or a battery.
SERIES = Table(
    "series",
    METADATA,
    Column("id", Integer, primary_key=True),
    _gateway_id(),
    # "production" | "consumption" | "net_consumption" | "inverter" | "battery"
    Column("kind", String(20), nullable=False),
    Column("phase", SmallInteger, nullable=False, default=0),  # 0: all phases; 1..3: L1..L3
    Column("device", String(64), nullable=False, default=""),  # inverter or battery serial; "" for the site
    UniqueConstraint("gateway_id", "kind", "phase", "device"),
)

# The readings (meter_data, inverter_data, battery_data, and the views that read them) are in stored.py.
