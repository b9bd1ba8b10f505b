"""Demo data: two realistic types, experiments, tags and a few thousand rows."""

from __future__ import annotations

import datetime as dt
import random

from wave_web import catalog
from wave_web import datatables
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.extensions import db

STROOP = [
    ColumnDef("trial", "INTEGER", False, "Trial number within the block"),
    ColumnDef("word", "STRING", False, "The colour word shown"),
    ColumnDef("ink", "STRING", False, "The ink colour"),
    ColumnDef("congruent", "BOOLEAN", False, "Word and ink match"),
    ColumnDef("reaction_time", "FLOAT", True, "Seconds from onset to key press"),
    ColumnDef("correct", "BOOLEAN", True, "Response matched the ink"),
    ColumnDef("responded_at", "DATETIME", True, "When the key was pressed (UTC)"),
    ColumnDef("extra", "JSON", True, "Anything else the software logged"),
]
SURVEY = [
    ColumnDef("item", "STRING", False, "Questionnaire item code"),
    ColumnDef("response", "INTEGER", True, "Likert response 1–7"),
    ColumnDef("comment", "TEXT", True, "Free-text comment"),
]


def _stroop_rows(
    rng: random.Random, participants: int, start: dt.datetime
) -> list[dict]:
    """60 trials per participant; incongruent trials are a little slower."""
    colours = ["red", "green", "blue", "yellow"]
    rows = []
    for p in range(1, participants + 1):
        for trial in range(1, 61):
            word, ink = rng.choice(colours), rng.choice(colours)
            rt = rng.lognormvariate(-0.5 + (0 if word == ink else 0.12), 0.25)
            rows.append(
                {
                    "participant_id": f"P{p:03d}",
                    "trial": trial,
                    "word": word,
                    "ink": ink,
                    "congruent": word == ink,
                    "reaction_time": round(rt, 4) if rng.random() > 0.02 else None,
                    "correct": rng.random() > 0.07,
                    "responded_at": start
                    + dt.timedelta(minutes=p * 15, seconds=trial * 2.5),
                    "extra": {
                        "block": 1 + (trial - 1) // 20,
                        "key": rng.choice("dfjk"),
                    },
                }
            )
    return rows


def _survey_rows(rng: random.Random, participants: int) -> list[dict]:
    """12 Likert items per participant, a few left empty."""
    comments = [None, None, "Too long", "Fine", "The room was noisy", None]
    return [
        {
            "participant_id": f"P{p:03d}",
            "item": f"Q{i:02d}",
            "response": rng.randint(1, 7) if rng.random() > 0.03 else None,
            "comment": rng.choice(comments),
        }
        for p in range(1, participants + 1)
        for i in range(1, 13)
    ]


def fill_demo(seed: int = 7) -> str:
    """Create the demo types, experiments, tags and rows; returns a summary."""
    rng = random.Random(seed)
    stroop = schema.create_type(
        "Stroop task",
        "Colour-word interference, keyboard responses.",
        "stroop_trials",
        STROOP,
    )
    survey = schema.create_type(
        "Post-session questionnaire",
        "Likert items after each session.",
        "questionnaire",
        SURVEY,
    )
    start = dt.datetime(2026, 3, 2, 9, 0)
    total = 0
    for i, (desc, tags, n) in enumerate(
        [
            ("Pilot, lab A", ["pilot", "lab-a"], 8),
            ("Main study wave 1, lab A", ["main", "lab-a"], 20),
            ("Main study wave 1, lab B", ["main", "lab-b"], 18),
        ]
    ):
        e = catalog.create_experiment(stroop, desc, tags, {"site": tags[-1], "wave": i})
        total += datatables.insert_rows(stroop, e.uuid, _stroop_rows(rng, n, start))
        q = catalog.create_experiment(survey, desc + " — questionnaire", tags, {})
        total += datatables.insert_rows(survey, q.uuid, _survey_rows(rng, n))
    db.session.commit()
    return f"Created 2 types, 6 experiments, 4 tags and {total:,} rows."
