from flask import Blueprint

from wave_web import short_ids

bp = Blueprint("data", __name__)
# after the app-wide role check: a short id is expanded for those who may see it
bp.before_request(short_ids.expand_experiment_id)

from wave_web.data import export_views  # noqa: E402,F401
from wave_web.data import import_views  # noqa: E402,F401
from wave_web.data import row_views  # noqa: E402,F401
from wave_web.data import summary_views  # noqa: E402,F401
from wave_web.data import views  # noqa: E402,F401
