"""Request authentication exactly as the venues check it.

JWT (Upbit, Bithumb /v1 /v2): ``Authorization: Bearer <jwt>`` signed HS256 or HS512 with the
account's secret used raw; claims ``access_key``, ``nonce`` (never reused), Bithumb also
``timestamp`` (ms, required); with any parameters, ``query_hash`` = SHA-512 hex of the query *as
received, in the order received, not percent-encoded* (a JSON body as ``k=v&…`` in body order,
arrays as ``k[]=v``) and ``query_hash_alg: SHA512``.

Bithumb legacy: ``Api-Key``, ``Api-Nonce`` (ms) and ``Api-Sign`` = base64 of the *hex* HMAC-SHA512
of ``endpoint + NUL + body + NUL + nonce``, with the body exactly as sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from karb.sim.engine import Account, VenueError

# The simulator's demo secrets (sim-secret) are short on purpose; PyJWT would warn on every check.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

JWT_ALGORITHMS = ("HS256", "HS512")
BITHUMB_JWT_MAX_AGE_MS = 60_000
LEGACY_MAX_SKEW_MS = 20_000


class NonceStore:
    """Nonces seen recently (bounded): a replayed token is refused as ``nonce_used``."""

    def __init__(self, size: int = 200_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def use(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def hash_source_from_query(raw_query: str) -> str:
    """The string a client hashes for a GET/DELETE: the query as sent, percent-decoding undone."""
    return unquote(raw_query)


def hash_source_from_body(body: dict[str, Any]) -> str:
    """A JSON body as ``k=v&…`` in body order; arrays repeat ``k[]=v``."""
    parts: list[str] = []
    for key, value in body.items():
        if isinstance(value, list):
            parts.extend(f"{key}[]={_scalar(v)}" for v in value)
        else:
            parts.append(f"{key}={_scalar(value)}")
    return "&".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _fail(name: str, message: str) -> VenueError:
    return VenueError(401, name, message)


def verify_jwt(authorization: str | None, hash_source: str | None, accounts: dict[str, Account],
               nonces: NonceStore, venue: str, now_ms: int) -> Account:
    """The account a request's bearer token proves, or VenueError(401, name)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise _fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다. (Authorization header missing)")
    token = authorization[len("Bearer "):].strip()
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.") from None
    if header.get("alg") not in JWT_ALGORITHMS:
        raise _fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다. (algorithm)")
    account = accounts.get(str(claims.get("access_key", "")))
    if account is None:
        raise _fail("invalid_access_key", "잘못된 엑세스 키입니다.")
    try:
        jwt.decode(token, account.secret_key, algorithms=[header["alg"]])
    except jwt.PyJWTError:
        raise _fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.") from None
    nonce = claims.get("nonce")
    if not nonce:
        raise _fail("invalid_query_payload", "nonce is required")
    if venue == "bithumb":
        stamp = claims.get("timestamp")
        if not isinstance(stamp, int):
            raise _fail("invalid_query_payload", "timestamp is required")
        if abs(now_ms - stamp) > BITHUMB_JWT_MAX_AGE_MS:
            raise _fail("expired_jwt", "JWT token is expired")
    if hash_source:
        expected = hashlib.sha512(hash_source.encode()).hexdigest()
        if claims.get("query_hash") != expected or claims.get("query_hash_alg", "SHA512") != "SHA512":
            raise _fail("invalid_query_payload", "query_hash does not match the request")
    if not nonces.use(f"{account.access_key}:{nonce}"):
        raise _fail("nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다.")
    return account


def legacy_signature(secret: str, endpoint: str, body: str, nonce: str) -> str:
    message = f"{endpoint}\0{body}\0{nonce}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha512).hexdigest()
    return base64.b64encode(digest.encode()).decode()


class LegacyAuthError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


def verify_legacy(headers: Any, endpoint: str, body: str, accounts: dict[str, Account],
                  now_ms: int) -> Account:
    key, sign, nonce = headers.get("Api-Key"), headers.get("Api-Sign"), headers.get("Api-Nonce")
    if not (key and sign and nonce):
        raise LegacyAuthError("5100", "Bad Request.(Auth Data)")
    account = accounts.get(key)
    if account is None:
        raise LegacyAuthError("5300", "Invalid Apikey")
    try:
        skew = abs(now_ms - int(nonce))
    except ValueError:
        raise LegacyAuthError("5100", "Bad Request.(Auth Data)") from None
    if skew > LEGACY_MAX_SKEW_MS:
        raise LegacyAuthError("5100", "Bad Request.(Request Time:reqTime%s/nowTime%d)" % (nonce, now_ms))
    if not hmac.compare_digest(sign, legacy_signature(account.secret_key, endpoint, body, nonce)):
        raise LegacyAuthError("5100", "Bad Request.(Auth Data)")
    return account


def now_ms() -> int:
    return time.time_ns() // 1_000_000
