"""How the registry reaches its database: SQLite's settings and file mode, drivers, failures.

The parts of :mod:`conveyor.store.registry` that are about the connection,
not about runs: the pragmas every SQLite connection gets, the private mode of
the database file, and the one-line messages for a missing driver or a server
that does not answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import exc

from conveyor.errors import RegistryUnavailable
from conveyor.store.files import PRIVATE_FILE, private_dir, restrict_file

__all__ = [
    "first_line",
    "is_connect_failure",
    "missing_driver",
    "private_sqlite_file",
    "sqlite_pragmas",
]


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # A row deleted or rewritten (a data fix hashing a credential) leaves no old bytes in the
    # file, whatever the build's default.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def private_sqlite_file(path: Path) -> None:
    """Make the database file (and its WAL and shared-memory files) readable by its owner only.

    It holds service credentials and everything runs record. SQLite gives the
    -wal and -shm files the database file's mode, so creating that file 0600
    before SQLite opens it covers all three; an older, wider file is narrowed.
    """
    try:
        private_dir(path.parent)
        try:
            os.close(
                os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
            )
            os.chmod(path, PRIVATE_FILE)
        except FileExistsError:
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                restrict_file(name)
    except OSError as exc:
        raise RegistryUnavailable(
            f"cannot create the registry database {path}: {exc.strerror or exc}",
            hint="Check that its folder is writable, or set CONVEYOR_DATABASE_URL.",
        ) from None


#: A database driver's module -> what to install for it.
_DRIVER_PACKAGES = {
    "psycopg": "'conveyor[postgres]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}


def missing_driver(display_url: str, error: ImportError) -> str:
    """One line: the URL, the driver module that is missing and what to install for it."""
    module = (error.name or str(error)).split(".")[0]
    package = _DRIVER_PACKAGES.get(module, module)
    return (
        f"CONVEYOR_DATABASE_URL={display_url} needs the database driver {module!r}, which is "
        f"not installed: pip install {package} (Conveyor is tested on SQLite and PostgreSQL)"
    )


def is_connect_failure(e: exc.OperationalError) -> bool:
    text = str(e.orig).lower()
    return any(
        s in text
        for s in (
            "could not connect",
            "connection refused",
            "connection to server",
            "unable to open database",
            "timeout expired",
            "name or service not known",
        )
    )


def first_line(err: object) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
