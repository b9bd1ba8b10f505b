"""Read scale-out: pages that only read go to a PostgreSQL streaming replica.

With DATABASE_READ_URL set (PostgreSQL only), the engine of that URL is the
Flask-SQLAlchemy bind `wave_read`, and the one session of a request chooses per
transaction (RoutingSession.get_bind):

- A GET/HEAD request's SELECTs go to the replica: grid pages, summaries, exports, the
  lists and the API's GETs. Everything else goes to the primary: POST/PUT/PATCH/DELETE
  requests whole, background threads and commands (import jobs, the job queue,
  migrations: no request), the sign-in and API key look-ups (`database.reading()`),
  short writes inside a GET (`database.writing()`: an API key's last use, the audit
  entry of an export), the views marked `database.primary_only` (/health), and any
  INSERT/UPDATE/DELETE, DDL, flush or SELECT … FOR UPDATE; once a transaction has
  written on the primary, the rest of it reads there too (its own changes).
- Read-your-writes, on every worker and server. A browser request that committed a
  change pins its user to the primary for WAVE_READ_PIN_SECONDS (default 5), in the
  signed session cookie; the replica is used only while its replay lag is under the
  pin length, so once the pin ends the replica has the change. An API request (no
  cookie) reads the replica only if it has replayed the primary's WAL up to where it
  was flushed when the request began (`pg_current_wal_flush_lsn()` on the primary,
  compared with `pg_last_wal_replay_lsn()` in the probe): every change committed
  before (synchronous_commit on, the default), the key's own included, is then on the
  replica; else the request reads the primary.
- The replica's state is probed (one round trip) at most once every PROBE_SECONDS per
  process, on a request that would read it. One that is down, cut off from its primary,
  or lags the pin length or more is passed over: reads go to the primary, and it is not
  tried again for DOWN_SECONDS. One that refuses connections between two probes is
  found at the request's first statement, which reads the primary instead
  (RoutingSession._connection_for_bind). Only a statement already running on the
  replica when it dies fails (the database 503 page). /health reports the replica's
  state (and stays 200: the app serves from the primary).
- Replica transactions are REPEATABLE READ: one snapshot for the type's registry row
  and the catalog that `datatables.reflect` reads, so the reflection cache, keyed by
  (table, schema_version), never pairs a registry version with another version's
  catalog, however far the replica lags. The page time limit (statement_timeout)
  applies on the replica as on the primary (database.configure_engine).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from flask import session
from flask.sessions import NullSession
from flask_sqlalchemy.session import Session

log = logging.getLogger(__name__)

READ_BIND = "wave_read"  # the Flask-SQLAlchemy bind key of the replica's engine
PIN_KEY = "wave_pin"  # in the signed session cookie: epoch seconds until
DOWN_SECONDS = 5  # a replica found down or lagging is not tried again for this long
PROBE_SECONDS = 1.0  # a probe that found the replica fit is trusted this long
_WROTE = "wave_wrote"  # session.info: this transaction wrote on the primary


class ReplicaRefused(ValueError):
    """DATABASE_READ_URL cannot be used with this DATABASE_URL (config.ConfigError)."""


def bind_options(primary_url: str, read_url: str, options: dict[str, Any]) -> dict:
    """The `wave_read` bind: the primary's pool settings, REPEATABLE READ.

    Refused unless both URLs are PostgreSQL: SQLite has no streaming replica.
    """
    if not primary_url.startswith("postgresql"):
        raise ReplicaRefused(
            "DATABASE_READ_URL (a read replica) needs PostgreSQL: DATABASE_URL is "
            "SQLite, which has no streaming replica. Unset DATABASE_READ_URL."
        )
    if not read_url.startswith("postgresql"):
        raise ReplicaRefused(
            "DATABASE_READ_URL must be a postgresql:// URL of a streaming replica "
            "of DATABASE_URL."
        )
    return {**options, "url": read_url, "isolation_level": "REPEATABLE READ"}


# ----------------------------------------------------------------------
# The session: one per request, an engine per transaction
# ----------------------------------------------------------------------


# Row locks a standby refuses ("cannot execute SELECT FOR SHARE in a read-only …")
_ROW_LOCK = re.compile(r"\bfor\s+(update|no\s+key\s+update|share|key\s+share)\b")


def _is_read(clause: Any) -> bool:
    """A statement the replica may run: a SELECT without a row lock (or none yet:
    `session.connection()` for reflection and Core reads)."""
    if clause is None:
        return True
    if isinstance(clause, sa.sql.Select | sa.sql.CompoundSelect):
        return getattr(clause, "_for_update_arg", None) is None
    if isinstance(clause, sa.TextClause):
        text = clause.text.lstrip().lower()
        return text.startswith("select") and not _ROW_LOCK.search(text)
    return False


class RoutingSession(Session):
    """Flask-SQLAlchemy's session, reading from the replica when the request may."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and not self.info.get(_WROTE):
            replica = self._db.engines.get(READ_BIND)
            if replica is not None:
                if not self._flushing and _is_read(clause):
                    if _replica_for_request() is not None:
                        return replica
                else:
                    self.info[_WROTE] = True  # the rest of the transaction: primary
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)

    def _connection_for_bind(self, engine, execution_options=None, **kw):
        """A replica that cannot be connected to (down since its last probe): this
        statement and the rest of the request read the primary instead."""
        try:
            return super()._connection_for_bind(engine, execution_options, **kw)
        except sa.exc.OperationalError:
            if engine is not self._db.engines.get(READ_BIND):
                raise
            _replica_lost()
            primary = self._db.engines[None]
            return super()._connection_for_bind(primary, execution_options, **kw)


@sa.event.listens_for(RoutingSession, "after_commit")
def _after_commit(session_: Session) -> None:
    if has_request_context() and (
        session_.info.get(_WROTE) or request.method not in ("GET", "HEAD")
    ):
        g.wave_wrote = True  # after a change, after_request pins the user (cookie)


@sa.event.listens_for(RoutingSession, "after_transaction_end")
def _after_transaction_end(session_: Session, transaction) -> None:
    if transaction.parent is None:
        session_.info.pop(_WROTE, None)


# ----------------------------------------------------------------------
# Which requests read from the replica
# ----------------------------------------------------------------------


def read_engine() -> sa.Engine:
    """The engine this request's reads use now (an export streams on it)."""
    from wave_web.extensions import db

    return _replica_for_request() or db.engine


def _replica_for_request() -> sa.Engine | None:
    """The replica's engine if this request (now) reads from it, else None."""
    if not has_request_context() or request.method not in ("GET", "HEAD"):
        return None
    from wave_web import database

    if database.intent() is not None:  # reading()/writing(): on the primary
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "wave_api", False) and g.get("api_key") is None:
        return None  # before the key is known (its pin): the primary, not remembered
    choice = g.get("wave_replica", False)
    if choice is False:
        choice = g.wave_replica = _choose()
    return choice


def _choose() -> sa.Engine | None:
    from wave_web.extensions import db

    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "wave_primary", False):
        return None
    engine = db.engines.get(READ_BIND)
    if engine is None:
        return None
    state = _state(current_app)
    if g.get("api_key") is not None:  # an API key: the replica only once caught up
        needed = g.get("wave_needed", False)
        if needed is False:
            needed = _primary_position()
        if needed is None or not state.usable(engine, pin_seconds(), needed):
            return None
        return engine
    until = session.get(PIN_KEY)  # a browser: pinned after its own change
    if isinstance(until, int) and until > time.time():
        return None
    return engine if state.usable(engine, pin_seconds()) else None


def pin_seconds() -> int:
    """WAVE_READ_PIN_SECONDS: a browser's pin after a change; the most lag allowed."""
    return int(current_app.config.get("WAVE_READ_PIN_SECONDS") or 5)


def _note_position() -> None:
    """before_request of an API GET: the primary's position before the request's own
    small writes (the key's last use), which the replica need not have."""
    view = current_app.view_functions.get(request.endpoint or "")
    if (
        request.method in ("GET", "HEAD")
        and getattr(view, "wave_api", False)
        and not getattr(view, "wave_primary", False)
    ):
        g.wave_needed = _primary_position()


def _primary_position() -> str | None:
    """How far the primary has flushed its WAL now: every change committed (and so
    flushed, synchronous_commit being on) before this request, the key's own
    included, lies before it; the replica receives only flushed WAL. (The insert
    position would not do: it runs ahead of the last record's end by its alignment,
    so a replica at rest would never reach it.) None if the primary is down."""
    from wave_web.extensions import db

    try:
        with db.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_current_wal_flush_lsn()").scalar()
    except sa.exc.SQLAlchemyError:
        return None  # the view's own read of the primary will say what is wrong


def pin_after_write(response):
    """after_request: a browser request that committed a change pins its user.

    Not the audit entry of a GET (an export, a refusal): that changes no data the
    user reads back, and pinning every export would send the next pages to the primary.
    """
    if (
        g.get("wave_wrote")
        and request.method not in ("GET", "HEAD")
        and not isinstance(session, NullSession)
    ):
        session[PIN_KEY] = math.ceil(time.time()) + pin_seconds()  # never shorter
    return response


# ----------------------------------------------------------------------
# The replica's state: probed on the request that would use it
# ----------------------------------------------------------------------

# standby?, replay lag in seconds, how far replayed. The lag is 0 when the replica
# streams from the primary and has replayed all it received; else the age of the last
# change it replayed (a replica cut off from its primary lags, however idle).
_PROBE = sa.text(
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
    "    AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0 "
    "  ELSE COALESCE("
    "    EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 1e9) "
    "END, "
    "CAST(pg_last_wal_replay_lsn() AS text)"
)


def lsn(text: str) -> int:
    """A WAL position ('16/B374D848') as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclasses.dataclass
class ReplicaState:
    """What the last probe found (per process); down/lagging: skipped for a while.

    A probe that found the replica fit is trusted for PROBE_SECONDS: its lag plus the
    probe's age must stay under the pin, and the position it had replayed only grows.
    """

    status: str = "unknown"  # ok, lagging, unreachable
    lag_seconds: float = 0.0
    standby: bool = True
    replayed: int = 0  # WAL position replayed at the probe
    probed_at: float = 0.0  # time.monotonic() of the probe
    skip_until: float = 0.0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def usable(self, engine: sa.Engine, pin: int, needed: str | None = None) -> bool:
        """True when fit for this request: up, lagging less than the pin, and
        replayed up to `needed` (the primary's position) when given. Probes (one round
        trip) unless the last probe answers that, or the replica is being skipped."""
        now = time.monotonic()
        if now < self.skip_until:
            return False
        if self._still_fit(now, pin, needed):
            return True
        return self.probe(engine, pin) and self._still_fit(
            time.monotonic(), pin, needed
        )

    def _still_fit(self, now: float, pin: int, needed: str | None) -> bool:
        age = now - self.probed_at
        if self.status != "ok" or age > PROBE_SECONDS or self.lag_seconds + age >= pin:
            return False
        return needed is None or not self.standby or self.replayed >= lsn(needed)

    def probe(self, engine: sa.Engine, pin: int) -> bool:
        """Ask the replica for its state now; True when it is fit (status ok)."""
        try:
            with engine.connect() as conn:
                standby, lag, replayed = conn.execute(_PROBE).one()
        except sa.exc.SQLAlchemyError as exc:
            if self.status != "unreachable":
                log.warning(
                    "read replica unreachable (%s); reading from the primary",
                    type(exc.orig or exc).__name__,
                )
            self._set("unreachable")
            return False
        lag = float(lag or 0)
        replayed = lsn(replayed) if replayed else 0
        if lag >= pin:
            if self.status != "lagging":
                log.warning(
                    "read replica lags %.1f s (pin %d s); reading from the primary",
                    lag,
                    pin,
                )
            self._set("lagging", lag, bool(standby), replayed)
            return False
        if self.status in ("unreachable", "lagging"):
            log.info("read replica back (lag %.1f s); reading from it again", lag)
        self._set("ok", lag, bool(standby), replayed)
        return True

    def _set(
        self, status: str, lag: float = 0.0, standby: bool = True, replayed: int = 0
    ) -> None:
        with self.lock:
            now = time.monotonic()
            self.status, self.lag_seconds, self.standby = status, lag, standby
            self.replayed = max(self.replayed, replayed) if status == "ok" else replayed
            self.probed_at = now
            self.skip_until = now + DOWN_SECONDS if status != "ok" else 0


def _state(app: Flask) -> ReplicaState:
    return app.extensions["wave_replica_state"]


def health() -> dict[str, Any] | None:
    """The replica's state for /health (probed now), or None without a replica."""
    from wave_web.extensions import db

    engine = db.engines.get(READ_BIND)
    if engine is None:
        return None
    state = _state(current_app)
    state.probe(engine, pin_seconds())
    found: dict[str, Any] = {"status": state.status}
    if state.status != "unreachable":
        found["lag_seconds"] = round(state.lag_seconds, 3)
    if not state.standby:
        found["warning"] = "DATABASE_READ_URL is not a standby server"
    return found


def _replica_lost() -> None:
    """The replica failed to connect: skip it for a while, this request included."""
    log.warning("read replica unreachable; reading from the primary")
    if has_request_context():
        g.wave_replica = None
        _state(current_app)._set("unreachable")


def _mark_down_on_error(context) -> None:
    """handle_error on the replica's engine: a lost connection skips it for a while."""
    if context.is_disconnect or isinstance(context.original_exception, OSError):
        state = _state(current_app) if has_request_context() else None
        if state is not None:
            state._set("unreachable")


def init_app(app: Flask) -> None:
    """Set up the replica's engine (page time limit) and the pins; no-op without one."""
    from wave_web import database
    from wave_web.extensions import db

    app.extensions["wave_replica_state"] = ReplicaState()
    with app.app_context():
        engine = db.engines.get(READ_BIND)
        if engine is None:
            return
        database.configure_engine(engine)
        sa.event.listen(engine, "handle_error", _mark_down_on_error)
    app.before_request(_note_position)
    app.after_request(pin_after_write)
