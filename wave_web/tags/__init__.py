from flask import Blueprint

bp = Blueprint("tags", __name__, url_prefix="/tags")

from wave_web.tags import views  # noqa: E402,F401
