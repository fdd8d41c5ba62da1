"""Bithumb request signing.

Current API (exchanges.md §2.4): Upbit's JWT (HS256, ``access_key``, ``nonce``, ``query_hash``,
``query_hash_alg``) plus a **required** ``timestamp`` claim in milliseconds.

Legacy API (§3.2): ``Api-Key``, ``Api-Nonce`` (ms) and ``Api-Sign`` = base64 of the ASCII *hex*
digest of HMAC-SHA512(secret, endpoint + NUL + urlencoded body + NUL + nonce); the body sent is
the same urlencoded string, ``endpoint=<path>`` included.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from karb.exchanges.credentials import Credentials
from karb.exchanges.v1api import signing
from karb.exchanges.v1api.signing import body_hash_source, query_hash_source

__all__ = ["authorization", "body_hash_source", "claims", "legacy_headers", "query_hash_source"]


def claims(credentials: Credentials, hash_source: str | None, now_ms: int | None = None) -> dict[str, Any]:
    payload = signing.claims(credentials, hash_source)
    payload["timestamp"] = now_ms if now_ms is not None else int(time.time() * 1000)
    return payload


def authorization(credentials: Credentials, hash_source: str | None) -> dict[str, str]:
    token = signing.sign(credentials, claims(credentials, hash_source))
    return {"Authorization": "Bearer " + token}


def legacy_body(endpoint: str, params: Sequence[tuple[str, Any]]) -> str:
    return urlencode([("endpoint", endpoint), *params])


def legacy_signature(secret: str, endpoint: str, body: str, nonce: str) -> str:
    message = f"{endpoint}\0{body}\0{nonce}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha512).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def legacy_headers(credentials: Credentials, endpoint: str, body: str,
                   nonce: str | None = None) -> dict[str, str]:
    nonce = nonce or str(int(time.time() * 1000))
    return {"Api-Key": credentials.access_key.reveal(), "Api-Nonce": nonce,
            "Api-Sign": legacy_signature(credentials.secret_key.reveal(), endpoint, body, nonce),
            "Content-Type": "application/x-www-form-urlencoded"}
