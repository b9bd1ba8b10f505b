"""Uploaded files of import jobs: streamed to the upload folder, named by the job.

A job's file is `<upload folder>/<job uuid hex>.csv` (the user's file name is only
ever displayed), written as `.part` and renamed when complete, removed in every outcome.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import logging
import os
import unicodedata
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from flask import current_app

from wave_web.errors import NoSpace

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024
MAX_FILE_NAME = 255
NO_SPACE = (
    "The server has no disk space left for this upload. Nothing was saved: ask an "
    "administrator to free space in the upload folder, then upload the file again."
)


@dataclass(frozen=True)
class StoredFile:
    path: str
    size: int
    sha256: str


def upload_dir() -> str:
    return current_app.config["WAVE_UPLOAD_DIR"]


def job_path(job_uuid: uuid.UUID, folder: str | None = None) -> str:
    """Where a job's file lives: named by the uuid only, never by user input."""
    return os.path.join(folder or upload_dir(), uuid.UUID(str(job_uuid)).hex + ".csv")


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def store_upload(stream: IO[bytes], job_uuid: uuid.UUID) -> StoredFile:
    """Copy an upload into the upload folder as the job's file (see store_stream)."""
    folder = upload_dir()
    os.makedirs(folder, exist_ok=True)
    return store_stream(stream, job_path(job_uuid, folder))


def store_stream(stream: IO[bytes], final: str) -> StoredFile:
    """Copy a stream to `final` in chunks, measuring and hashing it.

    The copy is written as `<final>.part` and renamed when complete, so a half-written
    file never looks like an upload; on any failure it is removed.
    """
    part = final + ".part"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(part, "xb") as out:
            while chunk := stream.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        os.replace(part, final)
    except OSError as exc:
        remove_file(part)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(NO_SPACE) from None
        raise
    except BaseException:
        remove_file(part)
        raise
    return StoredFile(final, size, digest.hexdigest())


def display_name(raw: str | None) -> str:
    """The user's file name for display: last path part, no control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:MAX_FILE_NAME] or "upload.csv"


def csv_bytes(rows: Iterable[list[str]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % 1000 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")
