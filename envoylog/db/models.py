"""Tables, as SQLAlchemy 2 declarative models. The schema itself is made by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from envoylog.db.types import UtcDateTime

# Stable constraint names, so that migrations can name what they change on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
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
