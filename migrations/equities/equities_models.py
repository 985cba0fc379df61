"""SQLAlchemy models for the equities database: the single source of truth.

The migrations in ``versions/`` must always produce exactly this schema
(``alembic.autogenerate.compare_metadata`` against a database at ``head``
returns an empty diff).  The module name is unique across the bundled
migration projects so several of them can be imported in one process.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Deterministic constraint/index names on every dialect.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: BIGINT everywhere except SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticker: Mapped[str] = mapped_column(
        String(20), nullable=False, unique=True, index=True
    )
    company_name: Mapped[str] = mapped_column(String(500), nullable=False)
    exchange: Mapped[str | None] = mapped_column(String(20), nullable=True)
    sector: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    stock_symbol_type: Mapped[str | None] = mapped_column(
        String(20), nullable=True
    )
    sentiment_score: Mapped[Decimal | None] = mapped_column(
        Numeric(3, 2), nullable=True
    )


class DailyOHLCV(Base):
    __tablename__ = "daily_ohlcv"
    __table_args__ = (
        Index("idx_daily_ohlcv_symbol_date", "symbol", "date", unique=True),
        Index("idx_daily_ohlcv_date", "date"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(
        String(20), ForeignKey("companies.ticker"), nullable=False
    )
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    open: Mapped[Decimal] = mapped_column(Numeric(15, 4), nullable=False)
    high: Mapped[Decimal] = mapped_column(Numeric(15, 4), nullable=False)
    low: Mapped[Decimal] = mapped_column(Numeric(15, 4), nullable=False)
    close: Mapped[Decimal] = mapped_column(Numeric(15, 4), nullable=False)
    volume: Mapped[int] = mapped_column(BigInteger, nullable=False)
    adjusted_close: Mapped[Decimal | None] = mapped_column(
        Numeric(15, 4), nullable=True, comment="Adjusted closing price"
    )
