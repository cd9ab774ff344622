"""The database errors that mean "try again later", not a fault of the request.

The app answers both kinds with 503 and Retry-After (app.py); the group-commit batches
fail every caller with them rather than retrying one by one (sign_batch.py); an event
stream asks its client to come back (views/live.py). docs/operations.md, "When the
database fails", says what a visitor and the log see.
"""

from __future__ import annotations

import asyncpg

# PostgreSQL restarting, crashed or out of reach. The pool replaces its broken
# connections by itself, so the answer is "try again in a few seconds".
DATABASE_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # 08: the connection failed or was lost
    # 57: a fast or immediate shutdown (57P01), another backend crashed and every
    # connection is ended (57P02), starting up or recovering (57P03), a statement
    # cancelled by an operator or a timeout (57014).
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,  # the connection closed under asyncpg
    asyncpg.exceptions.InternalClientError,
    # ConnectionRefusedError and kin, the Unix socket briefly gone during a restart, a
    # host name with several addresses that all refused ("Multiple exceptions"), and
    # TimeoutError: asyncpg raises what the socket raised.
    OSError,
)

# PostgreSQL runs but cannot store anything: its disk is full (53100) or failing
# (58030), it is out of memory or of connections (class 53). The transaction was
# rolled back; trying again helps once an operator has made room.
DATABASE_CANNOT_SAVE = (
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.PostgresSystemError,
)

# How long a visitor is asked to wait before trying again, in seconds.
UNAVAILABLE_RETRY_AFTER = 5
CANNOT_SAVE_RETRY_AFTER = 60


def database_trouble(error: BaseException) -> bool:
    """Whether `error` is the database's trouble (either kind above), not the request's."""
    return isinstance(error, DATABASE_UNAVAILABLE + DATABASE_CANNOT_SAVE)
