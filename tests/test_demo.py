"""`flask demo` fills an empty app with a realistic sample, once."""

from __future__ import annotations

import random

import sqlalchemy as sa
from wave_web import demo
from wave_web.models import Experiment
from wave_web.models import ExperimentType
from wave_web.models import Tag


def _count(db, model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_demo_command_fills_types_experiments_tags_and_rows(app, db):
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Created 2 types, 6 experiments, 4 tags and ")
    db.session.expire_all()
    assert _count(db, ExperimentType) == 2
    assert _count(db, Experiment) == 6
    assert _count(db, Tag) == 4
    rows = sum(e.row_count for e in db.session.scalars(sa.select(Experiment)))
    assert f"{rows:,} rows." in result.output


def test_demo_command_refuses_to_load_twice(app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo"]).exit_code == 0
    again = runner.invoke(args=["demo"])
    assert again.exit_code == 1
    assert "the demo may already be loaded" in again.output
    assert "Traceback" not in again.output


def test_demo_rows_are_reproducible_from_the_seed():
    first = demo._survey_rows(random.Random(3), 2)
    second = demo._survey_rows(random.Random(3), 2)
    assert first == second
    assert len(first) == 24
