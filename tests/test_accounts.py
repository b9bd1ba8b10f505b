"""Accounts, sessions and API keys in the domain layer (wave_web.accounts)."""

from __future__ import annotations

import datetime as dt

import pytest
from wave_web import accounts
from wave_web.errors import Conflict
from wave_web.errors import InvalidValue
from wave_web.errors import NameTaken
from wave_web.extensions import db as _db
from wave_web.models import AuditEntry
from wave_web.models import User
from wave_web.models import utcnow

PASSWORD = "correct horse battery"
MAX_AGE = dt.timedelta(hours=8)


def make_user(email="ada@example.org", role="researcher", password=PASSWORD):
    user = accounts.create_user(email, password, role)
    _db.session.commit()
    return user


def actions() -> list[str]:
    return [e.action for e in _db.session.query(AuditEntry).order_by(AuditEntry.id)]


def test_user_is_created_with_a_hashed_password(db):
    user = make_user()
    assert user.password_hash != PASSWORD
    assert user.password_hash.startswith("scrypt:")
    assert accounts.authenticate("ADA@example.org ", PASSWORD) == user
    assert actions() == ["user.create"]


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("", PASSWORD, "email"),
        ("not-an-email", PASSWORD, "email"),
        ("a b@example.org", PASSWORD, "email"),
        ("ada@example.org", "short", "password"),
        ("ada@example.org", "x" * 1025, "password"),
        ("ada@example.org", "ADA@example.org", "password"),
    ],
)
def test_bad_email_or_password_is_refused_with_its_field(db, email, password, field):
    with pytest.raises(InvalidValue) as caught:
        accounts.create_user(email, password, "viewer")
    assert caught.value.field == field


def test_same_email_in_another_case_is_taken(db):
    make_user()
    with pytest.raises(NameTaken):
        accounts.create_user("Ada@Example.org", PASSWORD, "viewer")


def test_wrong_password_unknown_email_and_disabled_user_fail_alike(db):
    user = make_user()
    messages = set()
    for email, password in [("ada@example.org", "wrong password!"), ("x@y.org", "p")]:
        with pytest.raises(accounts.LoginFailed) as caught:
            accounts.authenticate(email, password)
        messages.add(caught.value.message)
    make_user("boss@example.org", "admin")
    accounts.set_disabled(user, True)
    _db.session.commit()
    with pytest.raises(accounts.LoginFailed) as caught:
        accounts.authenticate("ada@example.org", PASSWORD)
    messages.add(caught.value.message)
    assert len(messages) == 1


def test_session_token_identifies_the_user_until_it_ends(db):
    user = make_user()
    token = accounts.start_session(user, "127.0.0.1", "pytest")
    _db.session.commit()
    assert accounts.session_user(token, MAX_AGE) == user
    assert accounts.session_user(token + "x", MAX_AGE) is None
    accounts.end_session(token)
    _db.session.commit()
    assert accounts.session_user(token, MAX_AGE) is None


def test_password_change_and_disabling_end_every_session(db):
    make_user("boss@example.org", "admin")
    user = make_user()
    first = accounts.start_session(user, None, None)
    second = accounts.start_session(user, None, None)
    _db.session.commit()
    accounts.change_password(user, PASSWORD, "a completely new one")
    _db.session.commit()
    assert accounts.session_user(first, MAX_AGE) is None
    assert accounts.session_user(second, MAX_AGE) is None
    third = accounts.start_session(user, None, None)
    _db.session.commit()
    accounts.set_disabled(user, True)
    _db.session.commit()
    assert accounts.session_user(third, MAX_AGE) is None


def test_sessions_end_after_their_maximum_age(db):
    from wave_web.models import UserSession

    user = make_user()
    token = accounts.start_session(user, None, None)
    _db.session.commit()
    row = _db.session.query(UserSession).filter_by(user_id=user.id).one()
    row.created_at = utcnow() - dt.timedelta(hours=9)
    _db.session.commit()
    assert accounts.session_user(token, MAX_AGE) is None


def test_change_password_needs_the_current_one(db):
    user = make_user()
    with pytest.raises(InvalidValue) as caught:
        accounts.change_password(user, "not it at all", "another good password")
    assert caught.value.field == "current"


def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(db):
    admin = make_user("boss@example.org", "admin")
    for other in _db.session.query(User).filter(User.id != admin.id):
        accounts.set_role(other, "viewer")  # the test suite's own admin
    _db.session.commit()
    for act in (
        lambda: accounts.set_role(admin, "viewer"),
        lambda: accounts.set_disabled(admin, True),
        lambda: accounts.delete_user(admin),
    ):
        with pytest.raises(Conflict):
            act()
    make_user("second@example.org", "admin")
    accounts.set_role(admin, "viewer")
    _db.session.commit()
    assert admin.role == "viewer"


def test_role_changes_are_audited_with_before_and_after(db):
    make_user("boss@example.org", "admin")
    user = make_user()
    accounts.set_role(user, "viewer")
    _db.session.commit()
    entry = _db.session.query(AuditEntry).order_by(AuditEntry.id.desc()).first()
    assert entry.action == "user.role"
    assert entry.details == {
        "before": {"role": "researcher"},
        "after": {"role": "viewer"},
    }


def test_api_key_secret_is_shown_once_and_stored_hashed(db):
    key, secret = accounts.create_key("lab PC", "experimentee")
    _db.session.commit()
    assert secret.startswith(f"wave_{key.prefix}_")
    assert secret not in (key.key_hash, key.prefix)
    assert accounts.key_for_secret(secret) == key
    assert accounts.key_for_secret(secret[:-1] + "?") is None
    accounts.revoke_key(key)
    _db.session.commit()
    assert accounts.key_for_secret(secret) is None
    assert actions() == ["key.create", "key.revoke"]


def test_expired_key_is_refused(db):
    key, secret = accounts.create_key("soon", "researcher", utcnow() + dt.timedelta(1))
    _db.session.commit()
    key.expires_at = utcnow() - dt.timedelta(seconds=1)
    _db.session.commit()
    assert accounts.key_for_secret(secret) is None


@pytest.mark.parametrize(
    ("label", "role", "field"),
    [("", "admin", "label"), ("x" * 101, "admin", "label"), ("ok", "root", "role")],
)
def test_bad_key_input_is_refused(db, label, role, field):
    with pytest.raises(InvalidValue) as caught:
        accounts.create_key(label, role)
    assert caught.value.field == field
