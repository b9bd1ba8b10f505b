"""Extension objects, created unbound and bound in create_app()."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from wave_web.replica import RoutingSession


class Base(DeclarativeBase):
    pass


# One session per request; with DATABASE_READ_URL its reads may go to the replica
db = SQLAlchemy(model_class=Base, session_options={"class_": RoutingSession})
csrf = CSRFProtect()
migrate = Migrate()
# Storage from RATELIMIT_STORAGE_URI (memory:// by default; redis:// for many workers)
limiter = Limiter(key_func=get_remote_address)
