"""Tables, as SQLAlchemy 2 declarative models. The schema itself is made by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from envoylog.db.types import UtcDateTime

# Stable constraint names, so that migrations can name what they change on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose metadata carries the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Gateway(Base):
    """A gateway envoylog has talked to, identified by the serial its /info reports."""

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))  # the config's gateway name ("default", "home", ...)
    firmware: Mapped[str | None] = mapped_column(String(40))
    part_number: Mapped[str | None] = mapped_column(String(40))
    metered: Mapped[bool | None]
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # What discovery found (endpoints, CTs) for `firmware`, as JSON; redone when the firmware changes.
    discovery: Mapped[str | None] = mapped_column(Text)
    # The gateway's clock minus this machine's, when they disagreed the last time it answered: a run that
    # gets no answer at all is timed by it too, so the run log keeps one clock.
    clock_offset_s: Mapped[float | None]


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for the big tables.
BigId = Integer().with_variant(BigInteger(), "postgresql")


class AuthRecord(Base):
    """A gateway's token or session cookie, with its expiry; and the cloud's back-off after failures."""

    __tablename__ = "auth"
    __table_args__ = (UniqueConstraint("gateway_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "token" | "session"
    secret: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(16))  # token: "cloud" | "manual" | "config"
    enphase_user: Mapped[str | None] = mapped_column(String(16))
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cloud_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    cloud_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why the last cloud attempt failed, one line without secrets: the back-off's later messages repeat it.
    cloud_error: Mapped[str | None] = mapped_column(Text)
    # The cloud route that last gave a token ("enlighten" | "entrez-web"): tried first next time.
    cloud_route: Mapped[str | None] = mapped_column(String(32))
    # The first failed cloud attempt since the last token: a renewal failing for a day is said once.
    cloud_failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Series(Base):
    """One time series of a gateway: a site channel (in total or one phase), an inverter or a battery."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("gateway_id", "kind", "phase", "device"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    # "production" | "consumption" | "net_consumption" | "inverter" | "battery"
    kind: Mapped[str] = mapped_column(String(20))
    phase: Mapped[int] = mapped_column(SmallInteger, default=0)  # 0: all phases; 1..3: L1..L3
    device: Mapped[str] = mapped_column(String(64), default="")  # inverter or battery serial; "" for the site


class Run(Base):
    """One collect run of one gateway: when, how it ended, what it cost and stored."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_gateway_started", "gateway_id", "started_at"),
        # `status` looks up each gateway's newest run with an error: without this index, a gateway that never
        # failed has the whole of its run log walked back to find none.
        Index(
            "ix_runs_gateway_error",
            "gateway_id",
            "started_at",
            sqlite_where=text("error IS NOT NULL"),
            postgresql_where=text("error IS NOT NULL"),
        ),
        # Runs that never learned their gateway (failed before /info, or still running) go by the configured
        # name: `status` finds their names, and each name's newest, among them alone.
        Index(
            "ix_runs_unattributed",
            "gateway_name",
            "started_at",
            sqlite_where=text("gateway_id IS NULL"),
            postgresql_where=text("gateway_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    gateway_name: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # "running" | "ok" | "partial" | "failed"
    requests: Mapped[int] = mapped_column(default=0)
    cloud_requests: Mapped[int] = mapped_column(default=0)
    rows_added: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """Something that changed about a gateway: a firmware update, what discovery found."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_gateway_at", "gateway_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))  # "firmware_changed" | "discovered"
    detail: Mapped[str] = mapped_column(Text)


class Claim(Base):
    """Which collector polls a gateway now: several collectors share a database, never a gateway.

    Times are milliseconds since the epoch by the database's clock (PostgreSQL's, or SQLite's machine), so
    collectors on machines whose clocks disagree still agree on when a claim ends.
    """

    __tablename__ = "claims"

    gateway_name: Mapped[str] = mapped_column(String(100), primary_key=True)  # the config's name
    holder: Mapped[str] = mapped_column(String(200))  # "host pid N nonce"
    claimed_ms: Mapped[int] = mapped_column(BigInteger)
    until_ms: Mapped[int] = mapped_column(BigInteger)  # a collector that dies lets go at this time
    done_ms: Mapped[int | None] = mapped_column(BigInteger)  # when its holder finished polling it


class Breaker(Base):
    """An endpoint that timed out, skipped until `open_until` so that it does not eat every run.

    Each timeout in a row doubles the pause; an answer (of any kind) ends it.
    """

    __tablename__ = "breakers"

    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(100), primary_key=True)
    timeouts: Mapped[int]  # timeouts in a row
    open_until: Mapped[datetime | None] = mapped_column(UtcDateTime)  # not asked before this time
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Problem(Base):
    """A problem a run has seen, since when, and when it was said (a line, so under cron a mail).

    A problem is said once, when it has lasted past its threshold; later runs stay silent about it, and the
    run that finds it gone says so once and deletes the row.
    """

    __tablename__ = "problems"

    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # "endpoint" | "token" | "discovery" ...
    subject: Mapped[str] = mapped_column(String(100), primary_key=True)  # an endpoint's path, or ""
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    said_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the last run that saw it
    detail: Mapped[str | None] = mapped_column(Text)  # the latest failure, one line without secrets


class CheckFinding(Base):
    """A problem `envoylog check` found, and when it said it: once a day at most, a line when it clears."""

    __tablename__ = "check_findings"

    # The config's name: a configured gateway that never answered has no row in gateways, and is checked.
    gateway: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # "stale" | "inverter_silent" | ...
    subject: Mapped[str] = mapped_column(String(100), primary_key=True)  # an inverter's serial, a day, or ""
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    said_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the last check that found it
    line: Mapped[str] = mapped_column(Text)  # what was said, for the line that says it cleared


class AuthLogEntry(Base):
    """A gateway session opened or a token taken by a collector: `check` counts them to find a storm."""

    __tablename__ = "auth_log"
    __table_args__ = (Index("ix_auth_log_gateway_at", "gateway_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # "session" | "token"
