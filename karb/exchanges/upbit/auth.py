"""Upbit request signing (exchanges.md §1.4): the shared ``/v1`` JWT, nothing added."""

from __future__ import annotations

from karb.exchanges.credentials import Credentials
from karb.exchanges.v1api.signing import (
    body_hash_source,
    claims,
    query_hash_source,
    sign,
)

__all__ = ["authorization", "body_hash_source", "query_hash_source"]


def authorization(credentials: Credentials, hash_source: str | None) -> dict[str, str]:
    return {"Authorization": "Bearer " + sign(credentials, claims(credentials, hash_source))}
