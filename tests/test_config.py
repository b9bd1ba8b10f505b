"""Configuration from the environment: good values read, bad ones clearly refused."""

from __future__ import annotations

import pytest
from wave_web import config
from wave_web import create_app


@pytest.mark.parametrize(
    ("variable", "raw", "key", "expected"),
    [
        ("WAVE_PAGE_SIZE", "25", "WAVE_PAGE_SIZE", 25),
        ("WAVE_PAGE_SIZE", " 100 ", "WAVE_PAGE_SIZE", 100),
        ("WAVE_MAX_UPLOAD_MB", "2", "MAX_CONTENT_LENGTH", 2 * 1024 * 1024),
        ("WAVE_DB_TIMEOUT_SECONDS", "10", "WAVE_DB_TIMEOUT_SECONDS", 10),
    ],
)
def test_numeric_variables_are_read(variable, raw, key, expected):
    assert config.from_environment({variable: raw}) == {key: expected}


@pytest.mark.parametrize(
    "variable", ["WAVE_PAGE_SIZE", "WAVE_MAX_UPLOAD_MB", "WAVE_DB_TIMEOUT_SECONDS"]
)
@pytest.mark.parametrize(
    "raw", ["abc", "-1", "0", "1.5", "1e3", "1,000", "0x10", "²", "9" * 5000]
)
def test_malformed_numeric_variable_names_the_variable_and_the_form(variable, raw):
    with pytest.raises(config.ConfigError) as info:
        config.from_environment({variable: raw})
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"{variable} must be a whole number")
    assert f"{variable}=" in message  # an example of the expected form
    assert "\n" not in message
    assert len(message) < 200


def test_empty_variable_is_ignored():
    assert config.from_environment({"WAVE_PAGE_SIZE": ""}) == {}


def test_create_app_refuses_a_malformed_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("WAVE_MAX_UPLOAD_MB", "lots")
    with pytest.raises(config.ConfigError, match="WAVE_MAX_UPLOAD_MB"):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'w.db'}"})


def test_postgresql_pool_is_pinged_bounded_and_waits_at_most_10_seconds():
    from wave_web.config import engine_options

    options = engine_options("postgresql+psycopg2://u@h/db", 3, 10_000)
    assert options["pool_pre_ping"] is True
    assert (options["pool_size"], options["max_overflow"]) == (5, 5)
    assert options["pool_timeout"] == 10
    assert options["connect_args"] == {"connect_timeout": 3}
