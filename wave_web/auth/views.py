"""Sign-in pages. Failed and successful sign-ins are audited; POSTs are rate-limited."""

from __future__ import annotations

import time

from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user

from wave_web import accounts
from wave_web.access import SEEN_KEY
from wave_web.access import SESSION_KEY
from wave_web.access import public
from wave_web.access import requires
from wave_web.access import safe_next
from wave_web.access import signed_in_user
from wave_web.auth import bp
from wave_web.errors import WaveError
from wave_web.extensions import db
from wave_web.extensions import limiter
from wave_web.models import name_key
from wave_web.models import record


def _sign_in(user) -> None:
    """A fresh session (new identifier) for `user` in this browser."""
    session.clear()
    token = accounts.start_session(
        user, request.remote_addr, request.headers.get("User-Agent")
    )
    g.audit_actor = user.email
    record("login", "user", user.id, f"{user.email} signed in")
    db.session.commit()
    session[SESSION_KEY] = token
    session[SEEN_KEY] = int(time.time())
    login_user(user)


def _account_key() -> str:
    return "account:" + name_key(request.form.get("email", "").strip())[:300]


def _login_limit() -> str:
    return current_app.config["WAVE_LOGIN_LIMIT"]


@bp.route("/setup", methods=["GET", "POST"])
@public
def setup():
    if accounts.has_users():
        abort(404)
    form, errors = request.form, {}
    if request.method == "POST":
        try:
            if form.get("password", "") != form.get("confirm", ""):
                raise WaveError("The two passwords differ.", field="confirm")
            user = accounts.create_user(
                form.get("email", ""), form.get("password", ""), "admin"
            )
        except WaveError as exc:
            db.session.rollback()
            errors = {exc.field or "email": exc.message}
        else:
            _sign_in(user)
            flash(f"Welcome, {user.email}: you are the first admin.", "success")
            return redirect(url_for("pages.home"))
    status = 422 if errors else 200
    return render_template("auth/setup.html", form=form, errors=errors), status


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_account_key)
def login():
    if not accounts.has_users():
        return redirect(url_for(".setup"))
    target = safe_next(request.values.get("next")) or url_for("pages.home")
    if current_user.is_authenticated and request.method == "GET":
        return redirect(target)
    form, error = request.form, None
    if request.method == "POST":
        email = form.get("email", "").strip()
        try:
            user = accounts.authenticate(email, form.get("password", ""))
        except accounts.LoginFailed as exc:
            db.session.rollback()
            record(
                "login.failed", "user", email[:64], f"Failed sign-in as {email[:200]}"
            )
            db.session.commit()
            error = exc.message
        else:
            _sign_in(user)
            return redirect(target)
    status = 401 if error else 200
    return render_template(
        "auth/login.html",
        form=form,
        error=error,
        next=safe_next(request.values.get("next")),
    ), status


@bp.post("/logout")
@requires("viewer")
def logout():
    accounts.end_session(session.get(SESSION_KEY))
    record("logout", "user", current_user.id, f"{current_user.email} signed out")
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for(".login"))


@bp.route("/account/password", methods=["GET", "POST"])
@requires("viewer")
def password():
    form, errors = request.form, {}
    if request.method == "POST":
        user = signed_in_user()
        try:
            if form.get("password", "") != form.get("confirm", ""):
                raise WaveError("The two new passwords differ.", field="confirm")
            accounts.change_password(
                user, form.get("current", ""), form.get("password", "")
            )
        except WaveError as exc:
            db.session.rollback()
            errors = {exc.field or "password": exc.message}
        else:
            db.session.commit()
            _sign_in(user)  # every other session of the user has ended
            flash(
                "Your password is changed; other sessions were signed out.", "success"
            )
            return redirect(url_for("pages.home"))
    status = 422 if errors else 200
    return render_template("auth/password.html", form=form, errors=errors), status
