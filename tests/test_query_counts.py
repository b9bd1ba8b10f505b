"""Every page's statements are bounded (issue 13, item 3): none grows with the data.

Each important page is requested twice (the first warms the per-process caches: the
reflected tables, a computed summary), and the statements of the second request are
counted; then one dimension of the data grows (rows, custom columns, types,
experiments with their tags) and they are counted again. No page may run more than
before (equal, or fewer: a sorted page reads its empty cells in a second statement
only when the values do not fill it), with one stated exception: the participant
page reads each type that holds the participant's rows (its own section, from its
own table with its own columns), so it runs one more statement per such type. A
page that reads once per row, column, type or experiment (N+1) fails here, naming
the page and the statements it added.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from tests.api_helpers import bearer
from tests.api_helpers import mint_key
from tests.conftest import statements
from tests.factories import make_experiment
from tests.factories import make_rows
from tests.factories import make_type
from wave_web import catalog
from wave_web import queries
from wave_web import schema
from wave_web.columns import ColumnDef
from wave_web.extensions import db as _db
from wave_web.models import Experiment

COLUMNS = (ColumnDef("score", "INTEGER"), ColumnDef("label", "STRING"))
MORE_COLUMNS = (
    ColumnDef("rt", "FLOAT"),
    ColumnDef("note", "TEXT"),
    ColumnDef("seen", "BOOLEAN"),
    ColumnDef("at", "DATETIME"),
    ColumnDef("meta", "JSON"),
    ColumnDef("level", "INTEGER"),
)
DIMENSIONS = ("rows", "columns", "types", "experiments")


def rows_for(start: int, n: int) -> list[dict]:
    """n rows, two participants (P1 and one of P2–P4), scores start…start+n-1."""
    return [
        {"participant_id": "P1" if i % 2 else f"P{2 + i % 3}", "score": start + i}
        for i in range(n)
    ]


class World:
    """The data the pages show, grown one dimension at a time."""

    def __init__(self) -> None:
        self.xtype = make_type("Main task", "main_task_data", COLUMNS)
        self.experiment = make_experiment(self.xtype, "Main study", ["pilot"])
        make_rows(self.xtype, self.experiment, rows_for(0, 4))

    def grow(self, dimension: str) -> None:
        if dimension == "rows":
            make_rows(self.xtype, self.experiment, rows_for(100, 120))
        elif dimension == "columns":
            for col in MORE_COLUMNS:
                schema.add_column(self.xtype, col)
            _db.session.commit()
        elif dimension == "types":
            for i in range(4):  # P1 has rows in each
                xtype = make_type(f"Other task {i}", f"other_{i}_data", COLUMNS)
                experiment = make_experiment(xtype, f"Other study {i}", [f"t{i}"])
                make_rows(xtype, experiment, rows_for(0, 3))
        else:
            for i in range(5):
                tags = [f"wave {i}", "pilot"]
                experiment = make_experiment(self.xtype, f"Study {i}", tags)
                make_rows(self.xtype, experiment, rows_for(10 * i, 3))
        _db.session.commit()

    def pages(self) -> dict[str, str]:
        """name → address of every page counted (the same addresses before and after
        growing: ids and cursors of the first rows)."""
        x, e = self.xtype, self.experiment
        grid = f"/experiments/{e.uuid}"
        first = min(
            queries.page_rows(
                x, queries.RowQuery.from_args(queries.grid_columns(x), {}), e.uuid
            ).rows,
            key=lambda r: r["id"],
        )
        score = next(c for c in queries.grid_columns(x) if c.name == "score")
        after = queries.Cursor(first["score"], first["id"]).encode(score)
        row = f"{grid}/rows/{first['id']}"
        return {
            "home": "/",
            "types list": "/types/",
            "type page": f"/types/{x.id}",
            "type grid": f"/types/{x.id}/rows",
            "experiments list": "/experiments/",
            "experiment grid": grid,
            "grid filtered": f"{grid}?participant_id__exact=P1",
            "grid filtered on a value": f"{grid}?score__gte=2&label__isnull=",
            "grid sorted": f"{grid}?_sort=score&_desc=1",
            "grid deep page": f"{grid}?_sort=score&_after={after}&_start=1&_size=25",
            "grid last page": f"{grid}?_last=1&_size=25",
            "row page": row,
            "row edit page": f"{row}/edit",
            "participants": "/participants/",
            "participant": "/participants/P1",
            "summaries": f"{grid}/summary",
            "type summaries": f"/types/{x.id}/summary",
            "tags": "/tags/",
            "audit": "/admin/audit",
            "import page": f"{grid}/import",
            "export page": f"{grid}/export",
            "type export page": f"/types/{x.id}/export",
        }

    def api_pages(self) -> dict[str, str]:
        return {
            "api experiments": "/api/v1/experiments/",
            "api types": "/api/v1/experiment-types/",
            "api tags": "/api/v1/tags/",
            "api rows": f"/api/v1/experiment-data/{self.experiment.uuid}/data/",
        }


@pytest.fixture
def world(db):
    return World()


def counted(app, client, url: str, headers: dict | None = None) -> list[str]:
    """The statements of `url` once warm (its second request; summaries computed
    anew, as after a write)."""
    first = client.get(url, headers=headers)
    assert first.status_code == 200, (url, first.status_code)
    app.extensions.pop("wave_summaries", None)
    with statements() as seen:
        again = client.get(url, headers=headers)
    assert again.status_code == 200, (url, again.status_code)
    return list(seen)


def measure(app, client, world: World, key: str) -> dict[str, list[str]]:
    found = {name: counted(app, client, url) for name, url in world.pages().items()}
    found["summaries fragment"] = counted(
        app, client, world.pages()["summaries"], {"HX-Request": "true"}
    )
    found["grid fragment"] = counted(
        app, client, world.pages()["grid sorted"], {"HX-Request": "true"}
    )
    for name, url in world.api_pages().items():
        found[name] = counted(app, client, url, bearer(key))
    return found


def shape(sql: str) -> str:
    """A statement without its literals and placeholders, to name what was added."""
    sql = re.sub(r"'[^']*'|%\(\w+\)s|\?|\b\d+\b", "_", sql)
    return " ".join(sql.split())[:160]


def test_no_page_runs_more_statements_as_the_data_grows(app, client, world):
    key = mint_key(app, "admin")
    before = measure(app, client, world, key)
    for dimension in DIMENSIONS:  # one at a time, each against the last count
        world.grow(dimension)
        after = measure(app, client, world, key)
        # one read per type holding P1's rows: the participant page's sections
        allowed = {"participant": 4 if dimension == "types" else 0}
        grown = {
            name: (len(before[name]), len(after[name]))
            for name in before
            if len(after[name]) > len(before[name]) + allowed.get(name, 0)
        }
        added = {
            name: sorted(
                {shape(s) for s in after[name]} - {shape(s) for s in before[name]}
            )
            for name in grown
        }
        assert not grown, (
            f"more statements with more {dimension}: {grown}; new: {added}"
        )
        before = after


def test_the_counts_cover_reads_of_the_data(app, client, world):
    """The recorder sees the grid's own reads (a test that counts nothing proves
    nothing)."""
    key = mint_key(app, "admin")
    found = measure(app, client, world, key)
    table = world.xtype.table_name
    for name in ("experiment grid", "grid deep page", "summaries", "api rows"):
        assert any(table in s for s in found[name]), name
    assert all(found[name] for name in found)


def test_a_page_reading_per_experiment_would_be_caught(app, client, world, monkeypatch):
    """The check fails for an N+1 page: the experiments list made to read each
    experiment's row count with a statement of its own."""

    def one_query_each(experiments):
        return {
            e.uuid: _db.session.execute(
                sa.select(Experiment.row_count).where(Experiment.uuid == e.uuid)
            ).scalar_one()
            for e in experiments
        }

    monkeypatch.setattr(catalog, "row_counts", one_query_each)
    key = mint_key(app, "admin")
    before = measure(app, client, world, key)["experiments list"]
    world.grow("experiments")
    after = measure(app, client, world, key)["experiments list"]
    assert len(after) == len(before) + 5
