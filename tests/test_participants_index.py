"""The participants index: every participant id across the types, in keyset pages.

participants.page_participants scans each type's participant_id index (a UNION ALL of
per-table DISTINCT ranges) and counts rows and experiments for the page's ids only, in
the tables that hold them.
"""

from __future__ import annotations

import pytest
from tests.conftest import statements
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from tests.htmlparse import parse
from wave_web import participants
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db
from wave_web.participants import ParticipantQuery
from wave_web.participants import page_participants
from wave_web.participants import prefix_end

COLUMNS = [ColumnDef("score", "INTEGER")]
ODD_IDS = ["<b>bold</b>", "with space", "ünïcödé", "a/b?c#d", "100%_"]


@pytest.fixture
def lab(db):
    """Two types, three experiments; P01 is in all three, P02 in two, others in one."""
    stroop = make_type("Stroop", "stroop_data", COLUMNS)
    flanker = make_type("Flanker", "flanker_data", COLUMNS)
    make_experiment(make_type("Unused", "unused_data", COLUMNS), "No rows")
    pilot = make_experiment(stroop, "Stroop pilot")
    main = make_experiment(stroop, "Stroop main")
    arrows = make_experiment(flanker, "Arrows")
    make_rows(stroop, pilot, [{"participant_id": "P01", "score": i} for i in range(3)])
    make_rows(stroop, main, [{"participant_id": p, "score": 1} for p in ("P01", "P02")])
    make_rows(
        flanker, arrows, [{"participant_id": p, "score": 1} for p in ("P01", "P02")]
    )
    ids = [f"P{i:02d}" for i in range(3, 12)] + ["Q1", "q2"]
    make_rows(flanker, arrows, [{"participant_id": p, "score": 1} for p in ids])
    return {"stroop": stroop, "flanker": flanker, "pilot": pilot}


def all_ids(lab) -> list[str]:
    return sorted(["P01", "P02", *(f"P{i:02d}" for i in range(3, 12)), "Q1", "q2"])


def test_index_counts_rows_and_experiments_across_types(lab):
    page = page_participants(ParticipantQuery())
    assert [p.id for p in page.participants] == all_ids(lab)
    counts = {p.id: (p.rows, p.experiments) for p in page.participants}
    assert counts["P01"] == (3 + 1 + 1, 3)
    assert counts["P02"] == (2, 2)
    assert counts["P05"] == (1, 1)
    assert not page.has_next and not page.has_previous


@pytest.mark.parametrize("per_statement", [1, 400])
@pytest.mark.parametrize("size", [1, 4, 50])
def test_keyset_pages_cover_every_id_once_both_ways(
    lab, monkeypatch, per_statement, size
):
    monkeypatch.setattr(participants, "PER_STATEMENT", per_statement)
    forward = []
    query = ParticipantQuery()
    while True:
        page = page_participants(query, size)
        assert 0 < len(page.participants) <= size
        forward.append([p.id for p in page.participants])
        if not page.has_next:
            break
        query = ParticipantQuery(after=page.last_id)
    assert [i for ids in forward for i in ids] == all_ids(lab)
    assert all(len(ids) == size for ids in forward[:-1])
    backward = []
    query = ParticipantQuery(before=forward[-1][0]) if len(forward) > 1 else None
    while query is not None:
        page = page_participants(query, size)
        backward.insert(0, [p.id for p in page.participants])
        query = ParticipantQuery(before=page.first_id) if page.has_previous else None
    assert backward == forward[:-1]


def test_previous_page_is_the_page_before_the_cursor(lab):
    page = page_participants(ParticipantQuery(before="P08"), 3)
    assert [p.id for p in page.participants] == ["P05", "P06", "P07"]
    assert page.has_next and page.has_previous
    first = page_participants(ParticipantQuery(before="P03"), 3)
    assert [p.id for p in first.participants] == ["P01", "P02", "P03"]
    assert first.has_next and not first.has_previous


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("P0", ["P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09"]),
        ("P1", ["P10", "P11"]),
        ("P11", ["P11"]),
        ("Q", ["Q1"]),  # upper and lower case differ
        ("q", ["q2"]),
        ("R", []),
        ("P011", []),
    ],
)
def test_prefix_search_finds_exactly_the_ids_that_start_with_it(lab, prefix, expected):
    page = page_participants(ParticipantQuery(prefix), 50)
    assert [p.id for p in page.participants] == expected


def test_prefix_search_pages_stay_inside_the_prefix(lab):
    ids = []
    query = ParticipantQuery("P0")
    while True:
        page = page_participants(query, 4)
        ids += [p.id for p in page.participants]
        if not page.has_next:
            break
        query = ParticipantQuery("P0", after=page.last_id)
    assert ids == [f"P0{i}" for i in range(1, 10)]
    back = page_participants(ParticipantQuery("P0", before="P05"), 2)
    assert [p.id for p in back.participants] == ["P03", "P04"]


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("abc", "abd"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),
        ("9", ":"),
    ],
)
def test_prefix_end_is_the_first_string_after_the_prefix(prefix, end):
    assert prefix_end(prefix) == end


def test_a_page_costs_one_scan_and_one_count_of_the_tables_holding_its_ids(lab):
    page_participants(ParticipantQuery())  # builds the statements
    for query in (ParticipantQuery(), ParticipantQuery(after="P09")):
        _db.session.rollback()
        with statements() as seen:
            page_participants(query, 2)
        scans = [s for s in seen if "LIMIT" in s]
        counts = [s for s in seen if "GROUP BY" in s]
        assert len(scans) == 1 and len(counts) == 1
        assert "stroop_data" in scans[0] and "flanker_data" in scans[0]
        assert "unused_data" not in scans[0]  # its experiment has no rows
        # keyset: a deep page starts at its cursor in the index, it skips nothing
        assert ("participant_id > " in scans[0]) == (query.after is not None)
        # counts read only the tables that hold the page's ids (P10, P11: flanker)
        assert "flanker_data" in counts[0]
        assert ("stroop_data" in counts[0]) == (query.after is None)


def test_index_page_lists_participants_with_counts_and_links(client, lab):
    response = client.get("/participants/")
    assert response.status_code == 200
    page = parse(response.data)
    assert page.find("title").text.startswith("Participants")
    rows = page.find("table", class_="participants").find("tbody").find_all("tr")
    cells = [[td.text for td in tr.find_all("td")] for tr in rows]
    assert cells[0] == ["P01", "5", "3"]
    assert [c[0] for c in cells] == all_ids(lab)
    assert rows[0].find("a").attrs["href"] == "/participants/P01"


def test_index_is_in_the_top_navigation_and_linked_from_a_participant(client, lab):
    nav = parse(client.get("/experiments/").data).find("nav", **{"aria-label": "Main"})
    assert "/participants/" in [a.attrs.get("href") for a in nav.find_all("a")]
    page = parse(client.get("/participants/P01").data)
    assert "/participants/" in [a.attrs.get("href") for a in page.find_all("a")]
    here = parse(client.get("/participants/").data).find(
        "a", **{"aria-current": "page"}
    )
    assert here.text == "Participants"


def test_index_pages_by_links_without_javascript(client, lab, monkeypatch):
    monkeypatch.setattr(participants, "PAGE_SIZE", 5)
    seen, url = [], "/participants/?q=P"
    while url:
        page = parse(client.get(url).data)
        body = page.find("table", class_="participants").find("tbody")
        seen += [tr.find("a").text for tr in body.find_all("tr")]
        following = page.find("a", rel="next")
        url = following.attrs["href"] if following else None
    assert seen == [i for i in all_ids(lab) if i.startswith("P")]
    previous = page.find("a", rel="prev").attrs["href"]
    assert "before=P11" in previous and "q=P" in previous


def test_search_form_is_a_get_form_that_keeps_the_text(client, lab):
    page = parse(client.get("/participants/?q=P1").data)
    form = page.find("form", role="search")
    assert form.attrs["method"] == "get"
    assert form.find("input", name="q").attrs["value"] == "P1"
    body = page.find("table", class_="participants").find("tbody")
    assert [tr.find("a").text for tr in body.find_all("tr")] == ["P10", "P11"]


def test_empty_states_say_why_there_is_nothing(client, db):
    none = parse(client.get("/participants/").data)
    assert "No participants yet" in none.text
    xtype = make_type("Stroop", "stroop_data", COLUMNS)
    make_rows(xtype, make_experiment(xtype), [{"participant_id": "P1", "score": 1}])
    nomatch = parse(client.get("/participants/?q=%3Cx").data)
    assert "No participant id starts with “<x”" in nomatch.text
    past = parse(client.get("/participants/?after=zzz").data)
    assert "past the end" in past.text


@pytest.mark.parametrize(
    "query",
    ["q=" + "x" * 101, "after=" + "x" * 101, "q=a%00b", "after=a&before=b"],
)
def test_unusable_search_or_cursor_is_a_clear_400(client, lab, query):
    response = client.get(f"/participants/?{query}")
    assert response.status_code == 400
    text = parse(response.data).text
    assert "participant" in text.lower() and "Traceback" not in text


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_participant_ids_are_escaped_and_their_links_work(client, db, odd):
    xtype = make_type("Stroop", "stroop_data", COLUMNS)
    make_rows(xtype, make_experiment(xtype), [{"participant_id": odd, "score": 1}])
    response = client.get("/participants/")
    assert b"<b>bold" not in response.data
    link = parse(response.data).find("table", class_="participants").find("a")
    assert link.text == odd
    shown = client.get(link.attrs["href"])
    assert shown.status_code == 200
    assert parse(shown.data).find("h1").text == f"Participant {odd}"
    searched = parse(client.get("/participants/", query_string={"q": odd[:4]}).data)
    assert [a.text for a in searched.find("tbody").find_all("a")] == [odd]


def test_viewers_have_the_index_in_their_top_bar_too(app, lab):
    viewer = app.test_client(user="viewer")
    response = viewer.get("/participants/")
    assert response.status_code == 200
    nav = parse(response.data).find("nav", **{"aria-label": "Main"})
    assert "/participants/" in [a.attrs.get("href") for a in nav.find_all("a")]
