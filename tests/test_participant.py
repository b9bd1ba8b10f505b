"""The participant page: one participant's rows across every type, found by probes.

queries.participant_rows asks every type's table at once (UNION ALL of EXISTS probes,
in statements of PROBES_PER_STATEMENT) which ones hold the participant, then reads
only those tables, up to a limit per type.
"""

from __future__ import annotations

import pytest
from tests.conftest import statements
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import queries
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db

COLUMNS = [ColumnDef("score", "INTEGER")]


@pytest.fixture
def many_types(db):
    """Six types with rows: P1 has rows in three, P2 in one; a seventh has none."""
    types = []
    for i in range(6):
        xtype = make_type(f"Type {i}", f"type_{i}_data", COLUMNS)
        experiment = make_experiment(xtype, f"Experiment {i}")
        make_rows(xtype, experiment, [{"participant_id": f"X{i}", "score": i}])
        types.append((xtype, experiment))
    for i in (1, 3, 4):
        xtype, experiment = types[i]
        rows = [{"participant_id": "P1", "score": j} for j in range(i)]
        make_rows(xtype, experiment, rows)
    make_rows(*types[5], [{"participant_id": "P2", "score": 5}])
    make_experiment(make_type("Empty", "empty_data", COLUMNS), "No rows")
    return types


@pytest.mark.parametrize("per_statement", [1, 2, 400])
def test_probes_find_the_types_with_rows_in_any_batch_size(
    many_types, monkeypatch, per_statement
):
    monkeypatch.setattr(queries, "PROBES_PER_STATEMENT", per_statement)
    sections = queries.participant_rows("P1")
    assert [s.xtype.name for s in sections] == ["Type 1", "Type 3", "Type 4"]
    assert [len(s.rows) for s in sections] == [1, 3, 4]
    assert all(r["participant_id"] == "P1" for s in sections for r in s.rows)
    assert not any(s.more for s in sections)
    assert [s.xtype.name for s in queries.participant_rows("P2")] == ["Type 5"]
    assert queries.participant_rows("nobody") == []


def test_only_the_tables_with_rows_are_read(many_types):
    queries.participant_rows("P1")  # builds the probes
    _db.session.rollback()
    with statements() as seen:
        queries.participant_rows("P1")
    reads = [s for s in seen if "_data.participant_id =" in s and "EXISTS" not in s]
    assert len(reads) == 3  # one per type with rows, not one per type
    probes = [s for s in seen if "AS type_id" in s]
    assert len(probes) == 1 and all(f"type_{i}_data" in probes[0] for i in range(6))
    assert "empty_data" not in probes[0]  # its only experiment has no rows


def test_a_new_type_is_probed_too(many_types):
    assert len(queries.participant_rows("P1")) == 3
    xtype = make_type("Type 9", "type_9_data", COLUMNS)
    make_rows(xtype, make_experiment(xtype), [{"participant_id": "P1", "score": 9}])
    assert [s.xtype.name for s in queries.participant_rows("P1")][-1] == "Type 9"


def test_per_type_limit_says_there_are_more(many_types):
    sections = queries.participant_rows("P1", limit=2)
    assert [(len(s.rows), s.more) for s in sections] == [
        (1, False),
        (2, True),
        (2, True),
    ]
    ids = [r["id"] for r in sections[2].rows]
    assert ids == sorted(ids)  # the first ones, by experiment and id


def test_sections_know_the_experiments_of_their_rows(many_types):
    (section,) = queries.participant_rows("P2")
    xtype, experiment = many_types[5]
    assert set(section.experiments) == {experiment.uuid}
    assert section.experiments[experiment.uuid].description == "Experiment 5"


def test_participant_page_shows_a_section_per_type_with_rows(client, many_types):
    response = client.get("/participants/P1")
    assert response.status_code == 200
    page = parse(response.data)
    titles = [s.find("h2").text for s in page.find_all("section")]
    assert [t.split(" (")[0].strip() for t in titles] == ["Type 1", "Type 3", "Type 4"]
    assert "Rows in 3 experiments of 3 experiment types." in page.text


def test_participant_page_counts_rows_in_proper_plurals(client, many_types):
    titles = [
        s.find("h2").text
        for s in parse(client.get("/participants/P1").data).find_all("section")
    ]
    assert [t.split(" (")[1] for t in titles] == ["1 row)", "3 rows)", "4 rows)"]
    page = parse(client.get("/participants/P2").data)
    assert "Rows in 1 experiment of 1 experiment type." in page.text


def test_participant_page_says_there_are_more_rows_than_shown(client, db):
    xtype = make_type("Long", "long_data", COLUMNS)
    rows = [{"participant_id": "P1", "score": i} for i in range(501)]
    make_rows(xtype, make_experiment(xtype), rows)
    page = parse(client.get("/participants/P1").data)
    assert page.find("h2").text == "Long (500+ rows)"
    assert "Showing the first 500 rows" in page.text


def test_participant_page_names_experiments_by_description_and_type(client, many_types):
    xtype, experiment = many_types[5]
    section = parse(client.get("/participants/P2").data).find("section")
    assert [th.text for th in section.find_all("th")][1] == "experiment"
    cell = section.find("td", class_="experiment-name")
    assert cell.text == "Experiment 5 · Type 5"
    assert cell.find("a").attrs["href"] == f"/experiments/{experiment.uuid}"


def test_participant_page_escapes_the_experiment_description(client, db):
    xtype = make_type("<i>Type</i>", "markup_data", COLUMNS)
    experiment = make_experiment(xtype, "<script>x</script> pilot")
    make_rows(xtype, experiment, [{"participant_id": "P1", "score": 1}])
    response = client.get("/participants/P1")
    assert b"<script>x" not in response.data and b"<i>Type" not in response.data
    cell = parse(response.data).find("td", class_="experiment-name")
    assert cell.text == "<script>x</script> pilot · <i>Type</i>"


@pytest.mark.parametrize("participant", ["'; DROP TABLE type_1_data; --", "P1%", "_"])
def test_hostile_participant_ids_are_values(client, many_types, participant):
    response = client.get(f"/participants/{participant}")
    assert response.status_code == 200
    assert "No rows for this participant" in parse(response.data).text
    assert len(queries.participant_rows("P1")) == 3
