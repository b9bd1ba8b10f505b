"""Administration: users, API keys and the audit log (admin role only)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from wave_web.admin import views  # noqa: E402,F401
