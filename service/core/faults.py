"""Which database errors are transient faults of ours (retry later) and which are about the data.

One classifier serves the HTTP layer (a transient fault is a 503 with ``Retry-After`` on
every route, never a 500) and the decision log (a transient fault keeps the batch for the
next flush; a fault about the values written is narrowed to its row, which is set aside).
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 2

# PostgreSQL SQLSTATE classes that say "the server or the connection", not "your data":
# 08 connection exception, 40 transaction rollback (serialization failure, deadlock),
# 53 insufficient resources, 57 operator intervention (shutdown, cancel), 58 system error.
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_PG_TRANSIENT_STATES = frozenset({"55P03"})  # lock_not_available (lock_timeout)
# ... and those that say "these values": 22 data exception, 23 integrity constraint, 54
# program limit exceeded (a value too large for an index row, a NUL where none may be).
_PG_ROW_CLASSES = ("22", "23", "54")

# SQLite reports contention and I/O trouble as OperationalError, alongside schema errors
# ("no such table") that are not transient; the message tells them apart.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error")


def is_transient(error: BaseException) -> bool:
    """True when retrying the same statement later can succeed without changing the data."""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # the pool had no connection to give, or one died under us
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, sa_exc.InterfaceError):
        return True
    original = error.orig
    state = getattr(original, "sqlstate", None)  # psycopg
    if isinstance(state, str) and state:
        return state.startswith(_PG_TRANSIENT_CLASSES) or state in _PG_TRANSIENT_STATES
    if isinstance(error, sa_exc.OperationalError):
        message = str(original).lower()
        if type(original).__module__.startswith("sqlite3"):
            return any(marker in message for marker in _SQLITE_TRANSIENT)
        return True  # a driver error without a SQLSTATE: the connection, not the row
    return False


def is_row_fault(error: BaseException) -> bool:
    """True when the error is about the values written (the database or the driver refused
    them: a NUL, a lone surrogate, a value too long, a constraint), so that writing the same
    statement without the row at fault can succeed."""
    if isinstance(error, sa_exc.DataError | sa_exc.IntegrityError | UnicodeError):
        return True
    original = getattr(error, "orig", None)
    state = getattr(original, "sqlstate", None)
    if isinstance(state, str) and state.startswith(_PG_ROW_CLASSES):
        return True
    return isinstance(error, sa_exc.StatementError) and isinstance(original, UnicodeError)


def describe(error: BaseException) -> str:
    """A short reason without the statement's parameters (which may hold user text)."""
    original = getattr(error, "orig", None) or error
    first_line = (str(original).strip().splitlines() or [""])[0]
    reason = f"{type(original).__name__}: {first_line}"[:300]
    # Printable ASCII only: the reason is logged and stored, and must not carry the very
    # character (a NUL, a lone surrogate) that the database refused.
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in reason)
