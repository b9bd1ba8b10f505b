"""Where a job's upload is kept so that every server reaches it.

SQLite (one server): the file in the upload folder is the upload (csv_io.uploads).
PostgreSQL: the file's bytes are also stored in `import_uploads`, in chunks of
CHUNK bytes, in the transaction that creates the job; a server that runs the job or
reads its offending rows copies them back into a local file, chunk by chunk, so memory
stays flat whatever the file's size. The chunks go when the job ends (in the import's
own transaction on success) or with the job's row.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

from wave_web.csv_io.uploads import job_path
from wave_web.csv_io.uploads import remove_file
from wave_web.csv_io.uploads import upload_dir
from wave_web.extensions import db
from wave_web.models import ImportUpload

CHUNK = 1024 * 1024


def is_shared() -> bool:
    """True when uploads are kept in the database (PostgreSQL)."""
    return db.engine.dialect.name != "sqlite"


def save(job_uuid: uuid.UUID, path: str) -> None:
    """Copy a local file into the job's chunks, in the session's transaction.

    The job's row must already be in that transaction (the chunks reference it).
    """
    table = ImportUpload.__table__
    with open(path, "rb") as fh:
        seq = 0
        while chunk := fh.read(CHUNK):
            db.session.execute(
                sa.insert(table).values(job_uuid=job_uuid, seq=seq, data=chunk)
            )
            seq += 1


def is_stored(job_uuid: uuid.UUID, connection: sa.Connection | None = None) -> bool:
    """True when the job's upload is in the database (its first chunk, at least)."""
    table = ImportUpload.__table__
    stmt = sa.select(table.c.seq).where(table.c.job_uuid == job_uuid).limit(1)
    runner = connection if connection is not None else db.session
    return runner.execute(stmt).first() is not None


def fetch(job_uuid: uuid.UUID, path: str) -> bool:
    """Write the job's chunks to `path` (via .part, renamed); False when none.

    One chunk per query in a short transaction of its own, so neither memory nor a
    transaction grows with the file.
    """
    table = ImportUpload.__table__
    part = f"{path}.{secrets.token_hex(4)}.part"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(part, "xb") as out:
            seq = 0
            while True:
                stmt = sa.select(table.c.data).where(
                    table.c.job_uuid == job_uuid, table.c.seq == seq
                )
                with db.engine.connect() as conn:
                    data = conn.execute(stmt).scalar()
                if data is None:
                    break
                out.write(data)
                seq += 1
        if seq == 0:
            remove_file(part)
            return False
        os.replace(part, path)
    except BaseException:
        remove_file(part)
        raise
    return True


def ensure_local(job_uuid: uuid.UUID, folder: str | None = None) -> str:
    """The job's file on this server's disk (fetched from the database if need be).

    Returns its path even when it could not be fetched: the pipeline then says the
    file is gone, as it would for a file deleted meanwhile.
    """
    path = job_path(job_uuid, folder)
    if is_shared() and not os.path.exists(path):
        fetch(job_uuid, path)
    return path


@contextlib.contextmanager
def local_copy(job_uuid: uuid.UUID) -> Iterator[str | None]:
    """A readable copy of the job's file for one request; None when it is gone.

    On PostgreSQL always a private copy, removed afterwards: a file of the upload
    folder may belong to a job another process of this server runs and removes.
    """
    path = job_path(job_uuid)
    if not is_shared():
        yield path if os.path.exists(path) else None
        return
    temp = os.path.join(upload_dir(), f"{uuid.UUID(str(job_uuid)).hex}.read.csv")
    temp = f"{temp}.{secrets.token_hex(4)}"
    try:
        yield temp if fetch(job_uuid, temp) else None
    finally:
        remove_file(temp)


def delete_stored(job_uuid: uuid.UUID) -> None:
    """Delete the job's chunks in the session's transaction (the caller commits)."""
    if is_shared():
        table = ImportUpload.__table__
        db.session.execute(sa.delete(table).where(table.c.job_uuid == job_uuid))


def forget(job_uuid: uuid.UUID, folder: str | None = None) -> None:
    """The job's upload is no longer needed: its chunks (in the session's
    transaction, the caller commits) and this server's file."""
    delete_stored(job_uuid)
    remove_file(job_path(job_uuid, folder))
