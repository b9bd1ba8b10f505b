"""flask commands: init-db, demo, keys create, users create, partition-type. Thin:
domain calls."""

from __future__ import annotations

import click
from flask import Flask

from wave_web import accounts
from wave_web import database
from wave_web import demo
from wave_web import partitioning
from wave_web.csv_io import queue
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import API_ROLES
from wave_web.models import ROLES


def init_app(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or upgrade the static tables (also done on first start)."""
        if not database.migrate_database(app):
            raise click.ClickException("The database is not reachable.")
        click.echo("Database is up to date.")

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

    @app.cli.command("worker")
    @click.option("--until-idle", is_flag=True, help="Exit when no job is waiting.")
    def worker(until_idle: bool) -> None:
        """Run import jobs without serving pages (PostgreSQL; any number of them).

        SIGTERM or Ctrl-C: no new job, running ones finish; a second one hands them
        back to the queue for another worker.
        """

        def ready() -> None:
            click.echo("Running import jobs; Ctrl-C or SIGTERM stops.")

        try:
            ran = queue.run_worker(app, until_idle, ready)
        except queue.NotNeeded as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"Stopped after {ran} import job{'s' if ran != 1 else ''}.")

    @app.cli.group("keys")
    def keys() -> None:
        """API keys for scripts and experiment software."""

    @keys.command("create")
    @click.option("--label", required=True, help="Who or what uses the key.")
    @click.option(
        "--role",
        type=click.Choice(API_ROLES),
        default="researcher",
        show_default=True,
        help="What the key may do (api-v1.md §2).",
    )
    def create_key(label: str, role: str) -> None:
        """Create a key and print its secret (shown only this once)."""
        try:
            _key, secret = accounts.create_key(label, role)
            db.session.commit()
        except WaveError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        click.echo(secret)

    @app.cli.group("users")
    def users() -> None:
        """Accounts of people who sign in."""

    @users.command("create")
    @click.option("--email", required=True)
    @click.option(
        "--role", type=click.Choice(ROLES), default="researcher", show_default=True
    )
    @click.password_option(help="At least 12 characters (asked when not given).")
    def create_user(email: str, role: str, password: str) -> None:
        """Create an account that can sign in at once."""
        try:
            accounts.create_user(email, password, role)
            db.session.commit()
        except WaveError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        click.echo(f"Created {role} {email}.")

    @app.cli.command("partition-type")
    @click.argument("table_name")
    def partition_type(table_name: str) -> None:
        """Partition a very large type's table by experiment (PostgreSQL only).

        One transaction holding an ACCESS EXCLUSIVE lock on that table: its pages
        and imports wait until the rows are copied and the indexes rebuilt.
        """
        try:
            done = partitioning.partition_type(partitioning.find_by_table(table_name))
        except WaveError as exc:
            db.session.rollback()
            raise click.ClickException(exc.message) from None
        click.echo(
            f"Partitioned {done.table_name} by experiment into "
            f"{partitioning.MODULUS} partitions: {done.rows:,} rows "
            f"in {done.seconds:.1f} s."
        )
