from flask import Blueprint

bp = Blueprint("experiment_types", __name__, url_prefix="/types")

from wave_web.experiment_types import file_views  # noqa: E402,F401
from wave_web.experiment_types import views  # noqa: E402,F401
