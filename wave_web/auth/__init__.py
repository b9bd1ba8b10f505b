"""Sign-in, sign-out, first-admin set-up and one's own password."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from wave_web.auth import views  # noqa: E402,F401
