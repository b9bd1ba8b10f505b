from flask import Blueprint

bp = Blueprint("data", __name__)

from wave_web.data import export_views  # noqa: E402,F401
from wave_web.data import import_views  # noqa: E402,F401
from wave_web.data import row_views  # noqa: E402,F401
from wave_web.data import summary_views  # noqa: E402,F401
from wave_web.data import views  # noqa: E402,F401
