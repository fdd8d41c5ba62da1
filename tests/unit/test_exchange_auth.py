"""Signing checked against vectors computed here from the documented recipes, independently of
the code under test (no PyJWT on the expected side)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from karb.exchanges.bithumb import auth as bithumb_auth
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.upbit import auth as upbit_auth

CREDS = Credentials(Secret("access-key-0123"), Secret("secret-key-abcdefghijklmnopqrstuvwxyz"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_hs256(token: str, secret: str) -> dict:
    """Verify a JWT by hand: header, payload, HMAC-SHA256 over 'header.payload'."""
    head, payload, sig = token.split(".")
    assert json.loads(b64url_decode(head)) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert b64url(expected) == sig
    return json.loads(b64url_decode(payload))


def test_upbit_query_hash_source_follows_the_docs() -> None:
    params = [("market", "KRW-BTC"), ("states[]", "wait"), ("states[]", "watch"), ("limit", 5)]
    assert upbit_auth.query_hash_source(params) == \
        "market=KRW-BTC&states[]=wait&states[]=watch&limit=5"
    assert upbit_auth.query_hash_source([("markets", "KRW-BTC,KRW-ETH")]) == "markets=KRW-BTC,KRW-ETH"
    body = {"market": "KRW-BTC", "side": "bid", "volume": "0.01", "price": "100000000",
            "ord_type": "limit", "identifier": "k1"}
    assert upbit_auth.body_hash_source(body) == \
        "market=KRW-BTC&side=bid&volume=0.01&price=100000000&ord_type=limit&identifier=k1"


def test_upbit_token_claims_and_signature() -> None:
    source = "market=KRW-BTC&states[]=wait"
    header = upbit_auth.authorization(CREDS, source)["Authorization"]
    assert header.startswith("Bearer ")
    claims = check_hs256(header[7:], "secret-key-abcdefghijklmnopqrstuvwxyz")
    assert claims["access_key"] == "access-key-0123"
    assert claims["query_hash"] == hashlib.sha512(source.encode()).hexdigest()
    assert claims["query_hash_alg"] == "SHA512"
    assert len(claims["nonce"]) == 36
    again = check_hs256(upbit_auth.authorization(CREDS, source)["Authorization"][7:],
                        "secret-key-abcdefghijklmnopqrstuvwxyz")
    assert again["nonce"] != claims["nonce"]  # a new nonce on every request
    bare = check_hs256(upbit_auth.authorization(CREDS, None)["Authorization"][7:],
                       "secret-key-abcdefghijklmnopqrstuvwxyz")
    assert "query_hash" not in bare


def test_bithumb_token_adds_the_timestamp_claim() -> None:
    header = bithumb_auth.authorization(CREDS, "market=KRW-BTC")["Authorization"]
    claims = check_hs256(header[7:], "secret-key-abcdefghijklmnopqrstuvwxyz")
    assert isinstance(claims["timestamp"], int) and claims["timestamp"] > 1_700_000_000_000
    assert claims["query_hash"] == hashlib.sha512(b"market=KRW-BTC").hexdigest()


def test_bithumb_legacy_api_sign_vector() -> None:
    endpoint = "/info/balance"
    body = bithumb_auth.legacy_body(endpoint, [("currency", "ALL")])
    assert body == "endpoint=%2Finfo%2Fbalance&currency=ALL"
    nonce = "1700000000000"
    message = endpoint.encode() + b"\x00" + body.encode() + b"\x00" + nonce.encode()
    hex_digest = hmac.new(b"secret-key-abcdefghijklmnopqrstuvwxyz", message,
                          hashlib.sha512).hexdigest()
    expected = base64.b64encode(hex_digest.encode()).decode()  # base64 of the hex, not the bytes
    headers = bithumb_auth.legacy_headers(CREDS, endpoint, body, nonce)
    assert headers["Api-Sign"] == expected
    assert headers["Api-Key"] == "access-key-0123" and headers["Api-Nonce"] == nonce


def test_sim_credentials_come_from_config_data_without_loading_the_simulator() -> None:
    import subprocess
    import sys
    code = (
        "import sys\n"
        "from karb.config import ActorSpec, Config, SimAccountConfig, SimConfig, VenueConfig\n"
        "from karb.exchanges.credentials import resolve\n"
        "venue = VenueConfig(name='upbit', credentials='sim')\n"
        "cfg = Config(actors=[ActorSpec(name='a', kind='sim')], venues=[venue], sim=SimConfig())\n"
        "creds = resolve(cfg, venue)\n"
        "assert creds.access_key.reveal() == 'sim-access', creds\n"
        "own = SimConfig(accounts=[SimAccountConfig(access_key='k', secret_key='s')])\n"
        "cfg = Config(actors=[ActorSpec(name='a', kind='sim')], venues=[venue], sim=own)\n"
        "assert resolve(cfg, venue).secret_key.reveal() == 's'\n"
        "assert not [m for m in sys.modules if m.startswith('karb.sim')], 'simulator loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
