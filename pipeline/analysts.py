"""Analyst accounts: scrypt password hashes with a salt each, and the clients each analyst may see."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline.db import Analyst, AnalystClient, Client
from pipeline.repo import get_client, utcnow
from pipeline.review import check_analyst_name

log = logging.getLogger(__name__)

#: scrypt cost: n (CPU/memory), r (block size), p (parallelism); 16 MiB of memory per hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_BYTES = 32
MIN_PASSWORD = 8


def _kdf_id(n: int, r: int, p: int) -> str:
    return f"scrypt:{n}:{r}:{p}"


def hash_password(password: str, salt: bytes, kdf: str) -> bytes:
    """The scrypt key of ``password`` with ``salt`` under the cost parameters named by ``kdf``."""
    name, n, r, p = kdf.split(":")
    if name != "scrypt":
        raise ValueError(f"unknown password hash {kdf!r}")
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=KEY_BYTES, maxmem=64 * 1024 * 1024)


def add_analyst(s: Session, name: str, password: str, client_slugs: Iterable[str]) -> Analyst:
    """Create an analyst, or reset an existing one's password and client list."""
    name = check_analyst_name(name)
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    clients = [get_client(s, slug.strip()) for slug in client_slugs if slug.strip()]
    if not clients:
        raise ValueError("give the analyst at least one client")
    salt, kdf = secrets.token_bytes(16), _kdf_id(SCRYPT_N, SCRYPT_R, SCRYPT_P)
    digest = hash_password(password, salt, kdf).hex()
    analyst = s.scalar(select(Analyst).where(Analyst.name == name))
    if analyst is None:
        analyst = Analyst(name=name, salt=salt.hex(), password_hash=digest, kdf=kdf, created_at=utcnow())
        s.add(analyst)
        s.flush()
    else:
        analyst.salt, analyst.password_hash, analyst.kdf = salt.hex(), digest, kdf
        s.execute(delete(AnalystClient).where(AnalystClient.analyst_id == analyst.id))
    s.add_all(AnalystClient(analyst_id=analyst.id, client_id=c.id) for c in {c.id: c for c in clients}.values())
    s.flush()
    log.info("analyst %s may review %s", name, ", ".join(sorted(c.slug for c in clients)))
    return analyst


def authenticate(s: Session, name: str, password: str) -> Analyst | None:
    """The analyst when the password is right, else None (constant-time comparison)."""
    analyst = s.scalar(select(Analyst).where(Analyst.name == (name or "").strip()))
    if analyst is None:
        log.info("sign-in refused: no analyst %r", name)
        return None
    digest = hash_password(password or "", bytes.fromhex(analyst.salt), analyst.kdf)
    if not hmac.compare_digest(digest, bytes.fromhex(analyst.password_hash)):
        log.info("sign-in refused for analyst %s: wrong password", analyst.name)
        return None
    return analyst


def analyst_clients(s: Session, analyst_id: int) -> list[Client]:
    """The clients this analyst may see, by slug."""
    stmt = select(Client).join(AnalystClient, AnalystClient.client_id == Client.id).where(AnalystClient.analyst_id == analyst_id)
    return list(s.scalars(stmt.order_by(Client.slug)))


def client_for(s: Session, analyst_id: int, slug: str) -> Client:
    """The client ``slug`` when the analyst may see it; LookupError otherwise (same message either way)."""
    for client in analyst_clients(s, analyst_id):
        if client.slug == slug:
            return client
    raise LookupError(f"no client {slug!r} for this analyst")
