"""wave_web: experiment types as real typed tables, in a Flask app."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from wave_web import access
from wave_web import accounts
from wave_web import api
from wave_web import cli
from wave_web import config
from wave_web import database
from wave_web import errors
from wave_web import htmx
from wave_web import replica
from wave_web import requestlog
from wave_web import templating
from wave_web.csv_io import queue
from wave_web.errors import WaveError
from wave_web.extensions import csrf
from wave_web.extensions import db
from wave_web.extensions import limiter
from wave_web.extensions import migrate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        # WAVE_INSTANCE_PATH: the folder of wave.db, secret_key and uploads
        instance_path=os.environ.get("WAVE_INSTANCE_PATH") or None,
        instance_relative_config=True,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    app.config.from_mapping(config.defaults(app.instance_path))
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(config.from_environment())
    app.config.update(test_config or {})
    os.makedirs(app.instance_path, exist_ok=True)
    _finish_config(app)

    db.init_app(app)
    csrf.init_app(app)
    migrate.init_app(app, db, directory=database.MIGRATIONS_DIR, render_as_batch=True)
    with app.app_context():
        database.configure_engine(db.engine)
    replica.init_app(app)  # DATABASE_READ_URL: reads of GET pages on the replica
    limiter.init_app(app)
    for module in (errors, htmx, templating, cli):
        module.init_app(app)
    _register_blueprints(app)
    api.init_app(app)
    if app.config["WAVE_AUTO_MIGRATE"]:
        database.migrate_database(app, then=lambda: _first_admin_from_environment(app))
        app.before_request(lambda: _ensure_migrated(app))
    access.init_app(app)  # after the migration check: it reads the users
    queue.init_app(app)  # PostgreSQL: this process claims import jobs too
    requestlog.init_app(app)  # last: its hook runs before every other
    if app.config["WAVE_PROXY_COUNT"]:  # behind nginx: the client's address, scheme
        count = app.config["WAVE_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)
    return app


def _first_admin_from_environment(app: Flask) -> None:
    """The first admin of a headless deploy, from WAVE_ADMIN_EMAIL/_PASSWORD.

    Runs under the migration lock (database.migrate_database), so of several workers
    starting at once one creates the account and the others find it.
    """
    email, password = app.config["WAVE_ADMIN_EMAIL"], app.config["WAVE_ADMIN_PASSWORD"]
    if not (email and password):
        return
    with database.writing():
        if accounts.has_users():
            db.session.rollback()
            return
        try:
            accounts.create_user(email, password, "admin")
            db.session.commit()
        except WaveError as exc:
            db.session.rollback()
            raise config.ConfigError(
                f"WAVE_ADMIN_EMAIL/WAVE_ADMIN_PASSWORD: {exc.message}"
            ) from None


def _finish_config(app: Flask) -> None:
    uri = config.normalise_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    options = config.engine_options(
        uri, app.config["WAVE_DB_TIMEOUT_SECONDS"], app.config["WAVE_SQLITE_BUSY_MS"]
    )
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **options,
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    if app.config.get("WAVE_DATABASE_READ_URL"):
        read_url = config.normalise_database_url(app.config["WAVE_DATABASE_READ_URL"])
        try:
            bind = replica.bind_options(
                uri, read_url, app.config["SQLALCHEMY_ENGINE_OPTIONS"]
            )
        except replica.ReplicaRefused as exc:
            raise config.ConfigError(str(exc)) from None
        binds = app.config.get("SQLALCHEMY_BINDS") or {}
        app.config["SQLALCHEMY_BINDS"] = {**binds, replica.READ_BIND: bind}
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = config.instance_secret(app.instance_path)


def _register_blueprints(app: Flask) -> None:
    from wave_web import admin
    from wave_web import auth
    from wave_web import data
    from wave_web import experiment_types
    from wave_web import experiments
    from wave_web import pages
    from wave_web import tags

    blueprints = (pages, auth, admin, experiment_types, experiments, tags, data)
    for package in blueprints:
        app.register_blueprint(package.bp)


def _ensure_migrated(app: Flask):
    """Retry migrations after a start without database; 503 until they succeed."""
    if not app.extensions.get("wave_migrated") and not database.migrate_database(
        app, then=lambda: _first_admin_from_environment(app)
    ):
        from flask import request
        from werkzeug.exceptions import ServiceUnavailable

        from wave_web.api import services

        if request.endpoint == "api_service.health":  # its own 503 body (§3)
            return services.unhealthy("database unreachable")
        raise ServiceUnavailable()
    return None
