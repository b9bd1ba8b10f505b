from flask import Blueprint

bp = Blueprint("experiments", __name__, url_prefix="/experiments")

from wave_web.experiments import views  # noqa: E402,F401
