"""Seed the benchmark's OHLCV database once; every measurement then works on a TEMPLATE clone of it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from infra import BIN, PgCluster, create_empty, drop, libpq_url, require, run_timed, tool_env
from synthetic import Project

# 25 years of weekdays: one symbol is about 0.8 MB of table and primary key.
TRADING_DAYS = 25 * 252
FIRST_BATCH = 8  # symbols inserted before the size per symbol is known
MAX_BATCH = 100  # about 80 MB per INSERT: progress is printed between batches

# Server-side: symbols [lo, hi] x TRADING_DAYS weekdays from Monday 2000-01-03. Each symbol has its own price level
# and a slow wave; open and close move around it by up to 1 %, high and low lie beyond both.
INSERT_COMPANIES = """
INSERT INTO companies (symbol, name)
SELECT 'S' || lpad(s::text, 5, '0'), 'Company ' || s FROM generate_series(%(lo)s, %(hi)s) AS s
"""
INSERT_PRICES = """
INSERT INTO daily_ohlcv (symbol, trade_date, open, high, low, close, volume)
SELECT 'S' || lpad(s::text, 5, '0'),
       date '2000-01-03' + (i / 5) * 7 + i %% 5,
       round(o, 4),
       round(greatest(o, c) * (1 + random() * 0.01)::numeric, 4),
       round(least(o, c) * (1 - random() * 0.01)::numeric, 4),
       round(c, 4),
       (50000 + random() * 5000000)::bigint
FROM generate_series(%(lo)s, %(hi)s) AS s
CROSS JOIN generate_series(0, %(days)s - 1) AS i
CROSS JOIN LATERAL (SELECT ((20 + (s * 7919) %% 480) * (1 + 0.4 * sin(i / 60.0 + s)))::numeric AS p) AS level
CROSS JOIN LATERAL (SELECT p * (1 + (random() - 0.5) * 0.02)::numeric AS o, p * (1 + (random() - 0.5) * 0.02)::numeric AS c) AS day
"""


@dataclass
class Seeded:
    cluster: PgCluster
    dbname: str
    revision: str
    symbols: int
    rows: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"database": self.dbname, "revision": self.revision, "symbols": self.symbols, "rows": self.rows, "bytes": self.bytes, "seconds": self.seconds}


def table_bytes(cluster: PgCluster, dbname: str) -> int:
    return int(cluster.execute("SELECT pg_total_relation_size('daily_ohlcv')", dbname=dbname)[0][0])


def insert_symbols(cluster: PgCluster, dbname: str, lo: int, hi: int) -> None:
    params = {"lo": lo, "hi": hi, "days": TRADING_DAYS}
    conn = cluster.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(INSERT_COMPANIES, params)
            cur.execute(INSERT_PRICES, params)
    finally:
        conn.close()


def seed(cluster: PgCluster, pgpass: Path, project: Project, size_mb: int, dbname: str = "seeded") -> Seeded:
    """The database at revision 1 (by the alembic CLI), daily_ohlcv filled until it is about size_mb."""
    started = time.monotonic()
    drop(cluster, dbname)  # left by an earlier attempt of this run that failed
    create_empty(cluster, dbname)
    env = tool_env(pgpass, libpq_url(cluster, dbname))
    require(run_timed("alembic upgrade %s" % project.first, [str(BIN / "alembic"), "-c", str(project.ini), "upgrade", project.first], env))
    target = size_mb * 1024 * 1024
    symbols, size = 0, 0
    batch = FIRST_BATCH
    while size < target:
        insert_symbols(cluster, dbname, symbols + 1, symbols + batch)
        symbols += batch
        size = table_bytes(cluster, dbname)
        print("  seeded %d symbols, %.0f MB (%.0f s)" % (symbols, size / 2**20, time.monotonic() - started), flush=True)
        per_symbol = size / symbols
        batch = max(1, min(MAX_BATCH, math.ceil((target - size) / per_symbol)))
    conn = cluster.connect(dbname)
    try:
        with conn.cursor() as cur:
            # As a long-lived table would be: statistics, visibility map and hint bits set, so the first clone's
            # dump does not pay for them and the repetitions measure the same thing.
            cur.execute("VACUUM (ANALYZE, FREEZE) daily_ohlcv")
            cur.execute("VACUUM ANALYZE companies")
            cur.execute("CHECKPOINT")
    finally:
        conn.close()
    rows = int(cluster.execute("SELECT count(*) FROM daily_ohlcv", dbname=dbname)[0][0])
    return Seeded(cluster, dbname, project.first, symbols, rows, table_bytes(cluster, dbname), time.monotonic() - started)
