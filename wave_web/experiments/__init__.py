from flask import Blueprint

from wave_web import short_ids

bp = Blueprint("experiments", __name__, url_prefix="/experiments")
# after the app-wide role check: a short id is expanded for those who may see it
bp.before_request(short_ids.expand_experiment_id)

from wave_web.experiments import views  # noqa: E402,F401
