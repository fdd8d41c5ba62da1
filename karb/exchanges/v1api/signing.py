"""The JWT scheme both ``/v1`` APIs use (exchanges.md §1.4, §2.4).

``Authorization: Bearer <JWT HS256>`` with claims ``access_key``, ``nonce`` (a new UUID4 every
request) and, when the request has parameters, ``query_hash`` = SHA-512 hex of the query string
*as sent but not percent-encoded* (arrays repeat the key as ``key[]=v``; a JSON body is hashed
as ``k=v&…`` in body order) with ``query_hash_alg: SHA512``. The secret is used raw. Bithumb
adds a ``timestamp`` claim (``karb.exchanges.bithumb.auth``).
"""


from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlencode

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from karb.exchanges.credentials import Credentials

# Real keys are long; the simulator's demo secret is not, and PyJWT would warn on every request.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)


def query_hash_source(params: Sequence[tuple[str, Any]]) -> str:
    """The string that is hashed for a GET/DELETE: ``unquote(urlencode(params, doseq=True))``."""
    return unquote(urlencode(list(params), doseq=True))


def body_hash_source(body: dict[str, Any]) -> str:
    """A JSON body as hashed: ``k=v&…`` in body order, arrays as ``k[]=v``."""
    parts: list[str] = []
    for key, value in body.items():
        if isinstance(value, (list, tuple)):
            parts.extend(f"{key}[]={v}" for v in value)
        else:
            parts.append(f"{key}={value}")
    return "&".join(parts)


def claims(credentials: Credentials, hash_source: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"access_key": credentials.access_key.reveal(),
                               "nonce": str(uuid.uuid4())}
    if hash_source:
        payload["query_hash"] = hashlib.sha512(hash_source.encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    return payload


def sign(credentials: Credentials, payload: dict[str, Any], algorithm: str = "HS256") -> str:
    return jwt.encode(payload, credentials.secret_key.reveal(), algorithm=algorithm)
