"""Users, API keys and the audit log. Every route needs the admin role.

Secrets (a new user's one-time password, a new API key) are rendered once in the
POST's own response, never stored in the session or a flash message.
"""

from __future__ import annotations

import datetime as dt

from flask import Response
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user

from wave_web import accounts
from wave_web import audit
from wave_web.access import requires
from wave_web.access import signed_in_user
from wave_web.admin import bp
from wave_web.errors import InvalidValue
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.models import API_ROLES
from wave_web.models import ROLES
from wave_web.params import page_arg

ID = "<int(max=2147483647):{}>"


# ----------------------------------------------------------------------
# Users
# ----------------------------------------------------------------------


@bp.get("/users")
@requires("admin")
def users():
    return render_template(
        "admin/users.html", pagination=accounts.list_users(page_arg())
    )


@bp.route("/users/new", methods=["GET", "POST"])
@requires("admin")
def create_user():
    form, errors = request.form, {}
    if request.method == "POST":
        password = form.get("password", "") or accounts.generated_password()
        try:
            user = accounts.create_user(
                form.get("email", ""),
                password,
                form.get("role", ""),
                must_change_password=True,
            )
            db.session.commit()
        except WaveError as exc:
            db.session.rollback()
            errors = {exc.field or "email": exc.message}
        else:
            return render_template(
                "admin/user_created.html", user=user, password=password
            )
    status = 422 if errors else 200
    page = render_template("admin/user_new.html", form=form, errors=errors, roles=ROLES)
    return page, status


@bp.route("/users/" + ID.format("user_id"), methods=["GET", "POST"])
@requires("admin")
def edit_user(user_id: int):
    user = accounts.get_user(user_id)
    if request.method == "POST":
        action = request.form.get("action", "")
        if action == "role":
            accounts.set_role(user, request.form.get("role", ""))
            message = f"{user.email} is now a {user.role}."
        elif action in ("disable", "enable"):
            if action == "disable" and user.id == current_user.id:
                raise InvalidValue("You cannot disable your own account.")
            accounts.set_disabled(user, action == "disable")
            message = f"{user.email} is {action}d."
        elif action == "end_sessions":
            ended = accounts.end_all_sessions(user)
            message = (
                f"Ended {ended} session{'s' if ended != 1 else ''} of {user.email}."
            )
        else:
            raise InvalidValue("Choose what to change.")
        db.session.commit()
        flash(message, "success")
        return redirect(url_for(".edit_user", user_id=user.id))
    return render_template("admin/user_edit.html", user=user, roles=ROLES)


@bp.route("/users/" + ID.format("user_id") + "/delete", methods=["GET", "POST"])
@requires("admin")
def delete_user(user_id: int):
    user = accounts.get_user(user_id)
    if request.method == "POST":
        if user.id == current_user.id:
            raise InvalidValue("You cannot delete your own account.")
        email = user.email
        accounts.delete_user(user)
        db.session.commit()
        flash(f"Deleted the account of {email}.", "success")
        return redirect(url_for(".users"))
    return render_template("admin/user_delete.html", user=user)


# ----------------------------------------------------------------------
# API keys
# ----------------------------------------------------------------------


@bp.get("/keys")
@requires("admin")
def keys():
    return render_template("admin/keys.html", pagination=accounts.list_keys(page_arg()))


def _expiry(text: str) -> dt.datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue(
            "Give the expiry as a date like 2027-01-31.", field="expires"
        ) from None
    return accounts.key_expiry(day)


@bp.route("/keys/new", methods=["GET", "POST"])
@requires("admin")
def create_key():
    form, errors = request.form, {}
    if request.method == "POST":
        try:
            key, secret = accounts.create_key(
                form.get("label", ""),
                form.get("role", ""),
                _expiry(form.get("expires", "")),
                signed_in_user(),
            )
            db.session.commit()
        except WaveError as exc:
            db.session.rollback()
            errors = {exc.field or "label": exc.message}
        else:
            return render_template("admin/key_created.html", key=key, secret=secret)
    status = 422 if errors else 200
    page = render_template(
        "admin/key_new.html", form=form, errors=errors, roles=API_ROLES
    )
    return page, status


@bp.route("/keys/" + ID.format("key_id") + "/revoke", methods=["GET", "POST"])
@requires("admin")
def revoke_key(key_id: int):
    key = accounts.get_key(key_id)
    if request.method == "POST":
        accounts.revoke_key(key)
        db.session.commit()
        flash(f"Revoked the key {key.prefix} “{key.label}”.", "success")
        return redirect(url_for(".keys"))
    return render_template("admin/key_revoke.html", key=key)


# ----------------------------------------------------------------------
# Audit log
# ----------------------------------------------------------------------


@bp.get("/audit")
@requires("admin")
def audit_log():
    try:
        flt = audit.AuditFilter.from_args(request.args)
        found = audit.page(flt, request.args.get("before"))
        error = None
    except InvalidValue as exc:
        flt, found, error = audit.AuditFilter(), audit.AuditPage([], None), exc
    emails, keys = audit.actors()
    page = render_template(
        "admin/audit.html",
        flt=flt,
        found=found,
        objects=audit.linked_objects(found.entries),
        groups=audit.action_groups(),
        object_types=audit.OBJECT_TYPES,
        label=audit.action_label,
        emails=emails,
        keys=keys,
        error=error,
        args=request.args,
    )
    return page, 400 if error else 200


@bp.get("/audit.csv")
@requires("admin")
def audit_export():
    flt = audit.AuditFilter.from_args(request.args)
    day = dt.date.today().isoformat()
    return Response(
        stream_with_context(audit.export_csv(flt)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-log-{day}.csv"'},
    )
