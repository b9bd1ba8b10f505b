"""gunicorn entry point: `gunicorn wsgi:app`."""

from wave_web import create_app

app = create_app()
