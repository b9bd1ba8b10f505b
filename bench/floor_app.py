"""The least a server can do per posted row: bench/api.py's floor (not the app).

A bare WSGI callable, no framework, no key, no validation, no audit: read the JSON
body, one INSERT … RETURNING id into the benchmark's own table, commit, answer 201
with the id. Served by the same gunicorn settings and driven by the same clients
as the app, it shows in the same run how many single inserts per second this
machine allows any Python server at all.

Environment: BENCH_FLOOR_DSN (a psycopg2 DSN), BENCH_FLOOR_EXPERIMENT (a uuid).
"""

import json
import os
import threading

import psycopg2

COLUMNS = (
    "participant_id",
    "reaction_time",
    "accuracy",
    "difficulty_level",
    "stimulus_type",
    "correct",
    "response_at",
    "notes",
    "extra",
)
INSERT = """
    INSERT INTO bench_trials (experiment_uuid, created_at, updated_at, participant_id,
        reaction_time, accuracy, difficulty_level, stimulus_type, correct,
        response_at, notes, extra)
    VALUES (%s, now(), now(), %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id
"""
_local = threading.local()


def _connection():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg2.connect(os.environ["BENCH_FLOOR_DSN"])
    return conn


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":  # the benchmark's "is it up?"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"up"]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    posted = json.loads(environ["wsgi.input"].read(size))
    data = posted["data"]
    values = [posted["participant_id"]] + [data.get(c) for c in COLUMNS[1:]]
    values[-1] = json.dumps(values[-1])
    conn = _connection()
    with conn.cursor() as cur:
        cur.execute(INSERT, [os.environ["BENCH_FLOOR_EXPERIMENT"], *values])
        row_id = cur.fetchone()[0]
    conn.commit()
    body = json.dumps({"id": row_id}).encode()
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
