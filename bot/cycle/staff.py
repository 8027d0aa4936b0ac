"""Staff accounts for the console: email and an argon2-hashed password.

argon2id (argon2-cffi's defaults) is slow on purpose, so a stolen database does not give up
passwords cheaply; the console also limits sign-in attempts (webhooks/console/auth.py).
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage.models import StaffAccount, utcnow

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is only a way to burn CPU
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()
# Verified against when no account has the email, so an unknown email takes as long to refuse
# as a wrong password: the timing does not tell who has an account.
_DUMMY_HASH = _hasher.hash("not anyone's password, only here to spend the same time")


class StaffError(ValueError):
    """A staff account could not be made; the message says why in plain words."""


def normalise_email(raw: str) -> str:
    return raw.strip().lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"the password must be at most {MAX_PASSWORD} characters long")


def add(session: Session, email: str, password: str) -> StaffAccount:
    address = normalise_email(email)
    if not _EMAIL.match(address) or len(address) > 254:
        raise StaffError(f"{email!r} is not an email address")
    check_password(password)
    if session.scalar(select(StaffAccount).where(StaffAccount.email == address)) is not None:
        raise StaffError(f"there is already a staff account for {address}")
    account = StaffAccount(email=address, password_hash=_hasher.hash(password))
    session.add(account)
    session.flush()
    return account


def _existing(session: Session, email: str) -> StaffAccount:
    account = find(session, email)
    if account is None:
        raise StaffError(f"there is no staff account for {normalise_email(email)}")
    return account


def disable(session: Session, email: str) -> StaffAccount:
    """Shut an account out (someone who left): it cannot sign in, and any console page open
    with it signs out at its next click. Its history (the audit log) stays."""
    account = _existing(session, email)
    account.disabled_at = account.disabled_at or utcnow()
    account.session_epoch = (account.session_epoch or 0) + 1
    return account


def enable(session: Session, email: str) -> StaffAccount:
    account = _existing(session, email)
    account.disabled_at = None
    return account


def set_password(session: Session, email: str, password: str) -> StaffAccount:
    """A new password (a forgotten one, or one that may be known): signs out every session."""
    account = _existing(session, email)
    check_password(password)
    account.password_hash = _hasher.hash(password)
    account.session_epoch = (account.session_epoch or 0) + 1
    return account


def listing(session: Session) -> list[StaffAccount]:
    return list(session.scalars(select(StaffAccount).order_by(StaffAccount.email)))


def find(session: Session, email: str) -> StaffAccount | None:
    return session.scalar(select(StaffAccount).where(StaffAccount.email == normalise_email(email)))


def authenticate(session: Session, email: str, password: str) -> StaffAccount | None:
    """The account if the password is right and the account is in use, else None."""
    account = find(session, email)
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None or account.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    account.last_signed_in_at = utcnow()
    return account
