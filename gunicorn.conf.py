"""gunicorn's settings for wave_web: `gunicorn wsgi:app` in this folder reads them.

Suited to a small server (2 cores): 4 processes of 2 threads. Threaded workers
keep connections alive between a client's requests (experiment software posts a
row per trial; a new TCP connection per request halved the API's throughput) and
one slow request does not hold a whole process. Command-line options override
these (`gunicorn -w 8 wsgi:app`); WEB_CONCURRENCY sets the number of processes.
"""

import os

bind = "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = 2
keepalive = 5  # seconds an idle kept-alive connection stays open
timeout = 60  # a worker silent this long is restarted (a 100,000-row batch takes ~3 s)
graceful_timeout = 30  # on SIGTERM, requests in progress get this long to finish
accesslog = "-"
errorlog = "-"
# the app's request id (X-Request-ID) and the time taken on every access line
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


def post_worker_init(worker):
    """A line per worker that has loaded the app (migrations, first admin, secret
    key done): start-up scripts and tests wait for one per worker."""
    worker.log.info("Worker %s ready", worker.pid)
    from wave_web.csv_io import queue

    queue.start_in_server(worker.wsgi)  # PostgreSQL: this worker claims import jobs
    config = getattr(worker.wsgi, "config", {})
    store = str(config.get("RATELIMIT_STORAGE_URI", ""))
    if worker.cfg.workers > 1 and store.startswith("memory://"):
        worker.log.warning(
            "Sign-in limits are counted in each of the %d workers (memory://), so an "
            "address gets %d times WAVE_LOGIN_LIMIT: set WAVE_RATELIMIT_STORAGE_URI "
            "to a shared store, e.g. redis://127.0.0.1:6379",
            worker.cfg.workers,
            worker.cfg.workers,
        )
