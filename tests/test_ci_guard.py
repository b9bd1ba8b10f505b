"""CI proves the PostgreSQL tests ran: WAVE_REQUIRE_POSTGRESQL=1 turns a skip into a
failure."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import postgresql_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


def test_missing_url_is_a_problem():
    assert postgresql_problem(None) == "WAVE_TEST_DATABASE_URL is not set"
    assert postgresql_problem("") == "WAVE_TEST_DATABASE_URL is not set"


def test_unreachable_server_is_a_problem():
    problem = postgresql_problem(UNREACHABLE)
    assert problem is not None
    assert problem.startswith("cannot connect to WAVE_TEST_DATABASE_URL")


def _run_pytest(**env: str) -> subprocess.CompletedProcess:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WAVE_TEST_DATABASE_URL", "WAVE_REQUIRE_POSTGRESQL")
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["--collect-only", "tests/test_columns.py"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_required_postgresql_without_url_fails_the_session():
    result = _run_pytest(WAVE_REQUIRE_POSTGRESQL="1")
    assert result.returncode not in (0, 5)
    assert "WAVE_REQUIRE_POSTGRESQL=1 but WAVE_TEST_DATABASE_URL is not set" in (
        result.stdout + result.stderr
    )


def test_required_postgresql_with_unreachable_server_fails_the_session():
    result = _run_pytest(
        WAVE_REQUIRE_POSTGRESQL="1", WAVE_TEST_DATABASE_URL=UNREACHABLE
    )
    assert result.returncode not in (0, 5)
    assert "cannot connect to WAVE_TEST_DATABASE_URL" in result.stdout + result.stderr


def test_without_the_requirement_a_missing_url_only_skips():
    result = _run_pytest()
    assert result.returncode == 0, result.stdout + result.stderr
