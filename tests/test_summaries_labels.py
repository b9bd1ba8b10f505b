"""Column summaries read well: distinct labels, visible whitespace, precise numbers."""

from __future__ import annotations

import pytest
from tests.factories import make_experiment
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import datatables
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db
from wave_web.summaries import cut_middle
from wave_web.summaries import derived_number_text
from wave_web.summaries import distinct_labels
from wave_web.summaries import duration_text
from wave_web.summaries import stored_number_text
from wave_web.summaries import visible_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (505.89999999999856, "505.9"),
        (0.1 + 0.2, "0.3"),
        (21609.4, "21609.4"),
        (852.7999999999986, "852.8"),
        (1.0000000000001, "1.0000000000001"),
        (1732000000.123456, "1732000000.12346"),
        (1e-300, "1e-300"),
        (-0.0, "-0.0"),
        (2.0, "2.0"),
        (float("inf"), "inf"),
    ],
)
def test_stored_number_is_its_shortest_form_without_binary_noise(value, text):
    assert stored_number_text(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (512.345678, "512.3"),
        (0.012345678, "0.01235"),
        (12345.678, "12346"),
        (2.5, "2.5"),
        (3.0, "3"),
        (-0.00001234, "-1.234e-05"),
        (1.5e20, "1.5e+20"),
        (0.0, "0"),
        (-0.00000000001, "-1e-11"),
        (9.99996, "10"),
    ],
)
def test_derived_figure_has_four_significant_digits(value, text):
    assert derived_number_text(value) == text


def test_durations_have_four_significant_digits():
    assert duration_text(183600) == "2.125 days"
    assert duration_text(0.25) == "0.25 s"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (" ", "␣"),
        ("   ", "␣␣␣"),
        (" left", "␣left"),
        ("right  ", "right␣␣"),
        ("two words", "two words"),
        ("a\tb", "a⇥b"),
        ("line\nbreak\r\nend\r", "line↵break↵end↵"),
        ("\t", "⇥"),
        ("\u00a0x", "␣x"),
    ],
)
def test_whitespace_is_made_visible(text, shown):
    assert visible_text(text) == shown


def test_long_text_is_cut_in_the_middle():
    text = "The participant pressed the left key"
    cut = cut_middle(text, 17)
    assert len(cut) == 17 and cut == "The part…left key"
    assert cut_middle("short", 17) == "short"


def test_texts_with_one_prefix_get_distinct_labels():
    texts = [f"Please rate how sure you were, trial {n}" for n in range(5)]
    labels = distinct_labels(texts)
    assert len(set(labels)) == 5
    assert all(len(label) <= 17 for label in labels)


def test_texts_that_differ_only_in_the_middle_get_distinct_labels():
    texts = [f"Response to stimulus {c} in the second block" for c in "ABC"]
    labels = distinct_labels(texts)
    assert len(set(labels)) == 3
    assert all(len(label) <= 17 for label in labels)
    assert labels[0].startswith("Res") and "A" in labels[0]


def test_labels_stay_distinct_when_nothing_short_tells_them_apart():
    texts = ["x" * 40 + "1" + "y" * 40, "x" * 40 + "2" + "y" * 40]
    texts += ["x" * 40 + "2" + "y" * 40 + "z"]
    assert len(set(distinct_labels(texts))) == 3


# ----------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------


@pytest.fixture
def page(app):
    """The summary page of an experiment with jsPsych-like floats and awkward text."""
    answers = [f"I was sure about the answer on trial {n}" for n in range(5)]
    with app.app_context():
        xtype = make_type(
            "Labels",
            "labels_data",
            [ColumnDef("rt", "FLOAT"), ColumnDef("answer", "STRING")],
        )
        experiment = make_experiment(xtype, "Pilot")
        rows = [{"rt": 505.89999999999856, "answer": " "}]
        rows += [{"rt": 512.3 + n, "answer": a} for n, a in enumerate(answers)]
        for values in rows:
            datatables.insert_row(
                xtype, experiment.uuid, {"participant_id": "p1", **values}
            )
        _db.session.commit()
        url = f"/experiments/{experiment.uuid}/summary"
    response = app.test_client().get(url)
    assert response.status_code == 200
    return parse(response.data)


def test_summary_page_labels_are_distinct_with_the_full_value_on_hover(page):
    chart = page.find("article", **{"aria-labelledby": "summary-answer"})
    labels = [t.text for t in chart.find_all("text", class_="value-label")]
    assert len(labels) == 6 and len(set(labels)) == 6
    assert "␣" in labels
    tips = [t.text for t in chart.find_all("title")]
    assert any(
        t.startswith("I was sure about the answer on trial 3: 1 row") for t in tips
    )
    names = [a.attrs["aria-label"] for a in chart.find_all("a")]
    assert "␣: 1 row: show only these rows" in names


def test_summary_page_numbers_have_the_column_precision(page):
    card = page.find("article", **{"aria-labelledby": "summary-rt"})
    minimum = card.find("dd", class_="summary-min")
    assert minimum.text == "505.9"
    assert minimum.attrs["title"] == "Stored as 505.89999999999856"
    assert card.find("dd", class_="summary-max").text == "516.3"
    assert "title" not in card.find("dd", class_="summary-max").attrs
    stats = dict(
        zip(
            [dt.text for dt in card.find_all("dt")],
            [dd.text for dd in card.find_all("dd")],
            strict=True,
        )
    )
    assert stats["Mean"] == "512.9"  # 512.8999999999997
    assert stats["SD"] == "3.709"  # 3.7094473981988094
