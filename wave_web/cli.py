"""flask commands: `init-db` and `demo`. Thin: they call the domain modules."""

from __future__ import annotations

import click
from flask import Flask

from wave_web import database
from wave_web import demo
from wave_web.errors import WaveError


def init_app(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or upgrade the static tables (also done on first start)."""
        ok = database.migrate_database(app)
        click.echo(
            "Database is up to date." if ok else "The database is not reachable."
        )

    @app.cli.command("demo")
    @click.option(
        "--seed", default=7, show_default=True, help="Random seed for the rows."
    )
    def load_demo(seed: int) -> None:
        """Fill a small realistic sample: two types, experiments, tags, a few
        thousand rows."""
        try:
            click.echo(demo.fill_demo(seed))
        except WaveError as exc:
            raise click.ClickException(
                f"{exc.message} (the demo may already be loaded; "
                "it only fills an empty app)"
            ) from None
