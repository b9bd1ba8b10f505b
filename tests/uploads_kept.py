"""The uploads import jobs keep, wherever they are kept (for the job tests)."""

from __future__ import annotations

import os

import sqlalchemy as sa
from wave_web.extensions import db as _db
from wave_web.models import ImportUpload


def kept_uploads(app) -> list[str]:
    """Files of the upload folder and, on PostgreSQL, the jobs whose upload is in the
    database (csv_io.storage), named as their files would be: `<uuid hex>.csv`."""
    folder = app.config["WAVE_UPLOAD_DIR"]
    found = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    with app.app_context(), _db.engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            stored = sa.select(ImportUpload.job_uuid).distinct()
            found |= {key.hex + ".csv" for key in conn.scalars(stored)}
    return sorted(found)
