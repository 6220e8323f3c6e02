"""What every SQLModel table of flowjobs shares (billing, webhook inbox, outbound deliveries):
the metadata, the `Base` row (string id, created/updated times), and the column helpers.

`UTCDateTime` stores timezone-aware UTC instants on both dialects (timestamptz on
PostgreSQL; ISO text on SQLite) and always hands back aware UTC datetimes. A naive datetime
is refused on the way in, so local wall time can never sneak into the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, DateTime, String
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

metadata = SQLModel.metadata


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: stored times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def Time(nullable: bool = False, **kw) -> Any:
    return Field(default=None if nullable else ..., sa_type=UTCDateTime, nullable=nullable, **kw)


def Money(nullable: bool = False, default: Any = ..., **kw) -> Any:
    return Field(default=None if nullable else default, sa_type=BigInteger, nullable=nullable, **kw)


def Json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSON, nullable=nullable)


def Ref(nullable: bool = False, **kw) -> Any:
    return Field(
        default=None if nullable else ..., sa_type=String, nullable=nullable, index=True, **kw
    )


def one_of(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({values})", name=f"ck_{column}")


def camel(name: str, sa_type, nullable: bool = False, default: Any = ...) -> Any:
    return Field(
        default=None if nullable and default is ... else default,
        sa_column=Column(name, sa_type, nullable=nullable),
    )


class Base(SQLModel):
    id: str = Field(primary_key=True, sa_type=String)
    created_at: datetime = Field(default=None, sa_type=UTCDateTime, nullable=False)  # set on flush
    updated_at: datetime = Field(
        default=None, sa_type=UTCDateTime, nullable=False
    )  # bumped on flush
