"""gunicorn entry point: `gunicorn wsgi:app`."""

import gc

from wave_web import create_app

app = create_app()
# The objects of start-up (modules, models, the route table) live as long as the
# worker: moved out of the garbage collector's generations, no pass walks them again.
gc.freeze()
