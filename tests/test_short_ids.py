"""Short experiment ids in addresses: the 8 hex digits the lists show lead somewhere.

short_ids.expand_experiment_id runs before the experiment pages' views: a unique
prefix (8+ hex digits, any case, dashes anywhere) redirects to the full address, an
ambiguous one lists the matches, anything else is the normal 404.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from tests.conftest import statements
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import catalog
from wave_web.extensions import db as _db
from wave_web.models import Experiment

TWINS = (
    uuid.UUID("6c4e0065-1a2b-4c3d-8e4f-000000000001"),
    uuid.UUID("6c4e0065-9a2b-4c3d-8e4f-000000000002"),
)
LONE = uuid.UUID("abcdef01-2345-4678-9abc-def012345678")


@pytest.fixture
def experiments(db):
    """Two experiments whose ids share 8 hex digits, and one on its own (with a row)."""
    xtype = make_type()
    made = []
    for description, key in (("Twin one", TWINS[0]), ("Twin two", TWINS[1])):
        experiment = make_experiment(xtype, description)
        _db.session.execute(
            sa.update(Experiment)
            .where(Experiment.uuid == experiment.uuid)
            .values(uuid=key)
        )
        made.append(key)
    lone = make_experiment(xtype, "Lone")
    _db.session.execute(
        sa.update(Experiment).where(Experiment.uuid == lone.uuid).values(uuid=LONE)
    )
    _db.session.commit()
    make_rows(xtype, catalog.get_experiment(LONE), [{"participant_id": "P1"}])
    return xtype


@pytest.mark.parametrize(
    "short", ["abcdef01", "ABCDEF01", "abcdef01-23", "abcdef0123454", "AbCd-Ef01"]
)
def test_unique_prefix_redirects_to_the_full_address(client, experiments, short):
    response = client.get(f"/experiments/{short}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/experiments/{LONE}"
    assert client.get(response.headers["Location"]).status_code == 200


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/summary", ""),
        ("/edit", ""),
        ("/delete", ""),
        ("/export", ""),
        ("", "?sort=-id&size=25"),
    ],
)
def test_every_experiment_address_takes_a_short_id(client, experiments, path, query):
    response = client.get(f"/experiments/abcdef01{path}{query}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/experiments/{LONE}{path}{query}"


def test_ambiguous_prefix_lists_the_matches(client, experiments):
    response = client.get("/experiments/6C4E0065/summary")
    assert response.status_code == 300
    page = parse(response.data)
    rows = page.find("table", class_="short-id-matches").find("tbody").find_all("tr")
    assert [r.find_all("td")[1].text for r in rows] == ["Twin one", "Twin two"]
    hrefs = [r.find("a").attrs["href"] for r in rows]
    assert hrefs == [f"/experiments/{key}/summary" for key in TWINS]
    assert "Several experiments start with 6C4E0065" in page.find("h1").text


def test_more_digits_tell_the_twins_apart(client, experiments):
    response = client.get("/experiments/6c4e0065-9")
    assert response.headers["Location"] == f"/experiments/{TWINS[1]}"


@pytest.mark.parametrize(
    "short",
    [
        "00000000",  # hex, no experiment
        "abcdef0",  # 7 digits
        "abcdef0g",  # not hex
        "abcd--ef0",  # 7 digits once the dashes are gone
        "abcdef01x",
    ],
)
def test_no_match_or_no_short_id_is_the_normal_404(client, experiments, short):
    response = client.get(f"/experiments/{short}")
    assert response.status_code == 404
    page = parse(response.data)
    assert page.find("title").text.startswith("Not found")
    message = page.find("main").text
    assert "No experiment id starts with" in message or "no experiment" in message


def test_a_post_to_a_short_id_is_not_redirected(client, experiments):
    response = client.post("/experiments/abcdef01/delete")
    assert response.status_code == 404
    assert catalog.get_experiment(LONE).row_count == 1


def test_signed_out_visitors_learn_nothing_from_a_short_id(app, experiments):
    response = app.test_client(user=None).get("/experiments/abcdef01")
    assert response.status_code == 302
    assert str(LONE) not in response.headers["Location"]
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("spelling", [str(LONE).upper(), LONE.hex, f"{{{LONE}}}"])
def test_a_full_uuid_in_another_spelling_redirects_to_its_one_address(
    client, experiments, spelling
):
    response = client.get(f"/experiments/{spelling}/summary")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/experiments/{LONE}/summary"


def test_prefix_lookup_is_one_range_query_on_the_key(experiments):
    _db.session.rollback()
    with statements() as seen:
        found = catalog.experiments_with_prefix("6c4e0065")
    assert [e.uuid for e in found] == list(TWINS)
    (lookup,) = [s for s in seen if "FROM experiments" in s]
    assert "BETWEEN" in lookup and "LIKE" not in lookup.upper()
    assert catalog.experiments_with_prefix("6c4e0065", limit=1)[0].uuid == TWINS[0]
    assert [e.uuid for e in catalog.experiments_with_prefix("6c4e00659")] == [TWINS[1]]


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("6C4E0065", "6c4e0065"),
        ("6c4e-0065-1a", "6c4e00651a"),
        ("6c4e006", None),
        ("6c4e006z", None),
        (LONE.hex, None),  # a full uuid is no prefix
        ("", None),
    ],
)
def test_short_id_prefix_reads_hex_digits_in_any_case(text, prefix):
    assert catalog.short_id_prefix(text) == prefix
