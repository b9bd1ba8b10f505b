from flask import Blueprint

bp = Blueprint("data", __name__)

from wave_web.data import views  # noqa: E402,F401
