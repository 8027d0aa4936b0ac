"""Who must never be contacted again: a person erased after opting out leaves only a keyed hash
of each address (`bot.privacy.erase`), which panel imports and the one writer look up.

Here, below both, because the writer's hot path asks it (someone new writing in) and must not
import the panel's CSV import to do so.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.storage.models import Suppression


def suppression_key(settings: Settings) -> bytes:
    """SUPPRESSION_KEY, or where no channel is on (a laptop) a random key kept in the instance
    folder, made on first use: such a machine needs no setup, and its hashes still cannot be
    reversed by someone holding only the database."""
    if settings.suppression_key:
        return settings.suppression_key.encode()
    path = settings.instance_path / "suppression.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together agree on one key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def suppression_hash(address: str, key: bytes) -> str:
    """Keyed (HMAC-SHA256), so a number cannot be found again by trying every number."""
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()


def legacy_suppression_hash(address: str) -> str:
    """The unkeyed hash suppressions were written with before SUPPRESSION_KEY existed; read only
    to re-key such a row the first time its number is seen again (see `suppressed`)."""
    return hashlib.sha256(f"involve-suppression:{address}".encode()).hexdigest()


def suppressed(session: Session, settings: Settings, addresses: Iterable[str]) -> set[str]:
    """Which of these numbers or chat ids belong to an erased person who had opted out.

    A row still carrying the old unkeyed hash is re-keyed when it matches, so the reversible
    hash does not outlive the next time that number is imported or writes in.
    """
    addresses = set(addresses)
    if not addresses:
        return set()
    key = suppression_key(settings)
    keyed = {suppression_hash(a, key): a for a in addresses}
    legacy = {legacy_suppression_hash(a): a for a in addresses}
    found = set()
    for row in session.scalars(
        select(Suppression).where(Suppression.address_hash.in_([*keyed, *legacy]))
    ):
        if row.address_hash in keyed:
            found.add(keyed[row.address_hash])
        else:
            address = legacy[row.address_hash]
            found.add(address)
            if session.scalar(
                select(Suppression.id).where(
                    Suppression.address_hash == suppression_hash(address, key)
                )
            ):
                session.delete(row)
            else:
                row.address_hash = suppression_hash(address, key)
    return found
