"""Very large types on PostgreSQL: a data table partitioned by experiment_uuid.

A partitioned data table is a parent `PARTITION BY HASH (experiment_uuid)` with
`MODULUS` fixed partitions made when the table is made. HASH and not LIST: a LIST
partition per experiment would need DDL in every create-experiment transaction (an
ACCESS EXCLUSIVE lock on the parent, which stops every read of the type while an
experiment is being created), and hundreds of experiments would make hundreds of
partitions for the planner to walk in the type-wide queries; HASH needs nothing per
experiment and a page of one experiment (`WHERE experiment_uuid = …`) is still pruned
to the single partition that holds it.

The partition key must be part of the primary key, so a partitioned table's key is
(id, experiment_uuid). Ids still come from the one sequence of the parent's SERIAL
column, shared by every partition: an id names one row of the type, as before, and
every row lookup, edit and delete of the app already names the experiment too.

The fact "partitioned" lives in the catalog only (no registry column): reflection
reads the primary key, `is_partitioned` asks pg_partitioned_table.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import REGCLASS

from wave_web import datatables
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NotFound
from wave_web.extensions import db
from wave_web.models import ExperimentType
from wave_web.models import lock_type
from wave_web.models import record
from wave_web.models import utcnow

log = logging.getLogger(__name__)

MODULUS = 16  # partitions per table: ~1/16 of the experiments each, never changed
UNSUPPORTED = (
    "Partitioning a type's table needs PostgreSQL; this server uses {dialect}, "
    "where every type is one ordinary table."
)


class PartitioningUnsupported(InvalidValue):
    """Asked for a partitioned table on a database other than PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        name = "SQLite" if dialect == "sqlite" else dialect
        super().__init__(UNSUPPORTED.format(dialect=name), field="size")


def supported(dialect: sa.Dialect) -> bool:
    """True when the database can hold partitioned data tables (PostgreSQL)."""
    return dialect.name == "postgresql"


def require_supported(dialect: sa.Dialect) -> None:
    """Refuse partitioning clearly on SQLite."""
    if not supported(dialect):
        raise PartitioningUnsupported(dialect.name)


def partition_name(table_name: str, remainder: int) -> str:
    """A schema-unique name for one partition (hash of the table name, like indexes)."""
    digest = hashlib.sha1(table_name.encode("utf-8")).hexdigest()[:8]
    return f"pt_{table_name[:36]}_{digest}_{remainder:02d}"


def partition_names(table_name: str) -> list[str]:
    """The names of a partitioned table's MODULUS partitions, in remainder order."""
    return [partition_name(table_name, r) for r in range(MODULUS)]


def create_partitions(conn: sa.Connection, table_name: str) -> None:
    """The MODULUS hash partitions of a partitioned parent, in the caller's transaction.

    Each inherits the parent's columns, primary key and indexes (also indexes added
    to the parent later). Names come from the validated registry name, quoted.
    """
    quote = conn.dialect.identifier_preparer.quote
    for remainder in range(MODULUS):
        conn.exec_driver_sql(
            f"CREATE TABLE {quote(partition_name(table_name, remainder))} "
            f"PARTITION OF {quote(table_name)} "
            f"FOR VALUES WITH (MODULUS {MODULUS:d}, REMAINDER {remainder:d})"
        )


def partition_statements(table_name: str, dialect: sa.Dialect) -> list[str]:
    """The partitions' CREATE TABLE statements, for the builder's preview."""
    quote = dialect.identifier_preparer.quote
    return [
        f"CREATE TABLE {quote(partition_name(table_name, r))} PARTITION OF "
        f"{quote(table_name)} FOR VALUES WITH (MODULUS {MODULUS}, REMAINDER {r})"
        for r in range(MODULUS)
    ]


def is_partitioned(conn: sa.Connection, table_name: str) -> bool:
    """True when `table_name` is a partitioned table of the current schema."""
    if not supported(conn.dialect):
        return False
    stmt = sa.text(
        "SELECT 1 FROM pg_catalog.pg_partitioned_table p "
        "JOIN pg_catalog.pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :name AND c.relnamespace = "
        "(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())"
    )
    return conn.execute(stmt, {"name": table_name}).first() is not None


# ----------------------------------------------------------------------
# Converting an existing type's table (flask --app wave_web partition-type)
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Converted:
    """What partition_type did: the table, rows moved, seconds under the lock."""

    table_name: str
    rows: int
    seconds: float


def find_by_table(table_name: str) -> ExperimentType:
    """The type whose data table is `table_name` (NotFound: the command says so)."""
    xtype = db.session.scalar(
        sa.select(ExperimentType).where(ExperimentType.table_name == table_name)
    )
    if xtype is None:
        raise NotFound(f"No experiment type has the table “{table_name}”.")
    return xtype


def partition_type(xtype: ExperimentType) -> Converted:
    """Rebuild a type's table as a partitioned one, in one transaction.

    Holds an ACCESS EXCLUSIVE lock on the table from start to commit: every read
    and write of this type waits (other types go on). Ids, the sequence's position,
    rows, timestamps and every index (the sort indexes by their names) are kept;
    on any error nothing changes. Time: a copy of the rows plus the index builds.
    """
    conn = db.session.connection()
    require_supported(conn.dialect)
    if not lock_type(xtype.id):  # serialises with schema changes of the type
        raise NotFound(f"The type “{xtype.name}” was deleted just now.")
    name = xtype.table_name
    if is_partitioned(conn, name):
        raise Conflict(f"The table “{name}” of “{xtype.name}” is already partitioned.")
    start = time.perf_counter()
    old = datatables.reflect_now(conn, name, xtype.columns)
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"LOCK TABLE {quote(name)} IN ACCESS EXCLUSIVE MODE")
    indexes = sorted(
        (ix.name, [c.name for c in ix.columns]) for ix in old.indexes if ix.name
    )
    standard = {ix.name for ix in datatables.build_table(name, []).indexes}
    aside = f"wave_old_{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    sequence = conn.execute(
        sa.select(sa.func.pg_get_serial_sequence(quote(name), "id"))
    ).scalar_one()  # schema-qualified and quoted by PostgreSQL itself
    last = conn.execute(  # None: the sequence never handed out an id
        sa.select(sa.func.pg_sequence_last_value(sa.cast(sequence, REGCLASS)))
    ).scalar_one()
    # Free the names the new table takes: indexes, primary key, sequence, table.
    for index_name, _ in indexes:
        conn.exec_driver_sql(f"DROP INDEX {quote(index_name)}")
    pkey = sa.inspect(conn).get_pk_constraint(name)["name"]
    conn.exec_driver_sql(f"ALTER TABLE {quote(name)} RENAME TO {quote(aside)}")
    if pkey:
        conn.exec_driver_sql(
            f"ALTER TABLE {quote(aside)} RENAME CONSTRAINT {quote(pkey)} "
            f"TO {quote(aside + '_pkey')}"
        )
    conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} RENAME TO {quote(aside + '_seq')}")
    new = datatables.build_table(name, xtype.columns, partitioned=True, indexes=False)
    new.create(conn)
    create_partitions(conn, name)
    names = [c.name for c in new.columns]
    source = sa.table(aside, *(sa.column(n) for n in names))
    moved = conn.execute(
        sa.insert(new).from_select(names, sa.select(*source.c))
    ).rowcount
    conn.execute(
        sa.select(
            sa.func.setval(
                sa.func.pg_get_serial_sequence(quote(name), "id"),
                last if last is not None else 1,
                last is not None,
            )
        )
    )
    conn.exec_driver_sql(f"DROP TABLE {quote(aside)}")  # and its sequence
    for index_name, cols in indexes:
        holder = sa.Table(name, sa.MetaData(), *(sa.Column(c) for c in cols))
        sa.Index(index_name, *(holder.c[c] for c in cols)).create(conn)
    missing = standard - {n for n, _ in indexes}
    for index in datatables.build_table(name, xtype.columns).indexes:
        if index.name in missing:  # a table that lost one: made like a new table's
            index.create(conn)
    record(
        "type.partition",
        "experiment_type",
        xtype.id,
        f"Partitioned the table “{name}” by experiment ({MODULUS} hash partitions)",
        table=name,
        rows=moved,
        partitions=MODULUS,
    )
    xtype.updated_at = utcnow()  # bumps schema_version: every worker reflects again
    try:
        db.session.commit()
    finally:
        datatables.forget(name)
    seconds = time.perf_counter() - start
    log.info("partitioned %s: %d rows in %.1f s", name, moved, seconds)
    return Converted(name, moved, seconds)
