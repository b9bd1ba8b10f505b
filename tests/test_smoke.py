from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type


def test_start_page_renders_on_an_empty_database(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Create the first type" in response.data


def test_type_experiment_and_rows_show_on_their_pages(client, db):
    xtype = make_type()
    exp = make_experiment(xtype, "Spring pilot", ["pilot"])
    make_rows(xtype, exp, [{"participant_id": "P1", "reaction_time": 0.5}])
    assert b"Spring pilot" in client.get("/experiments/").data
    page = client.get(f"/experiments/{exp.uuid}")
    assert page.status_code == 200
    assert b"P1" in page.data
