"""Verified actors when self-hosted: ``AUTH_*`` makes the server check bearer tokens as AgentCore's JWT authorizer does.

A real issuer (discovery + JWKS on loopback, keys made here) and the real server (``python agent.py``)
over HTTP: forged, stale and misdirected tokens are refused with a 401 before anything is read or
stored, a valid RS256 or ES256 token's ``sub`` is the actor, ``/ping`` stays open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers.oidc_issuer import AUDIENCE, CLIENT, IssuerKey, OIDCIssuer, b64url, new_key, unsigned_token
from tests.helpers.server import Server

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
ACTOR_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Actor-Id"


def call(server: Server, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], Any]:
    """One request (``http.client``: the headers go out exactly as given); status, headers, JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else None
    finally:
        connection.close()


def chat(server: Server, token: str | None, body: dict[str, Any] | None = None, session: str = "s1",
         **headers: str) -> tuple[int, dict[str, str], Any]:
    sent = {SESSION_HEADER: session, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return call(server, "POST", "/invocations", body or {"message": "hello"}, sent)


class Keys:
    """The issuer's published keys (RS256 and ES256) and one it never published."""

    def __init__(self, issuer: OIDCIssuer) -> None:
        self.issuer = issuer
        self.rsa = issuer.publish(new_key("rsa-1", "RS256"))
        self.ec = issuer.publish(new_key("ec-1", "ES256"))


@pytest.fixture(scope="module")
def issuer() -> Iterator[OIDCIssuer]:
    with OIDCIssuer() as running:
        yield running


@pytest.fixture(scope="module")
def keys(issuer: OIDCIssuer) -> Keys:
    return Keys(issuer)


def auth_env(issuer: OIDCIssuer, directory: Path, **extra: str) -> dict[str, str]:
    return {"AUTH_DISCOVERY_URL": issuer.discovery_url, "AUTH_ALLOWED_AUDIENCES": AUDIENCE,
            "AUTH_ALLOWED_CLIENTS": CLIENT, "MEMORY_BACKEND": "sqlite", "SESSION_DB": str(directory / "s.db"),
            "LONG_TERM_MEMORY": "off", **extra}


@pytest.fixture(scope="module")
def server(issuer: OIDCIssuer, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("auth")
    running = Server(auth_env(issuer, directory), log_path=directory / "log").start()
    try:
        yield running
    finally:
        running.stop()


# -- forged, stale and misdirected tokens --------------------------------------------------------

def hs256_with_the_public_key(keys: Keys) -> str:
    """The classic forgery: an HMAC keyed with the issuer's public key (PEM), which anyone can read."""
    public_pem = keys.rsa.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.rsa.kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(keys.issuer.claims()).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def tampered(keys: Keys) -> str:
    """A valid token for alice whose payload was edited to say bob, signature kept."""
    header, _, signature = keys.issuer.token(keys.rsa).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(keys.issuer.claims(sub="bob")).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


FORGED: dict[str, Callable[[Keys], str]] = {
    "expired": lambda k: k.issuer.token(k.rsa, exp=int(time.time()) - 120, iat=int(time.time()) - 600),
    "not yet valid": lambda k: k.issuer.token(k.rsa, nbf=int(time.time()) + 600),
    "wrong issuer": lambda k: k.issuer.token(k.rsa, iss="https://attacker.example"),
    "wrong audience": lambda k: k.issuer.token(k.rsa, aud="another-api"),
    "no audience": lambda k: k.issuer.token(k.rsa, aud=None),
    "wrong client": lambda k: k.issuer.token(k.rsa, client_id="another-client"),
    "no expiry": lambda k: k.issuer.token(k.rsa, exp=None),
    "alg none": lambda k: unsigned_token({"alg": "none", "typ": "JWT", "kid": k.rsa.kid}, k.issuer.claims()),
    "alg none, no kid": lambda k: unsigned_token({"alg": "none"}, k.issuer.claims()),
    "alg as a list": lambda k: unsigned_token({"alg": ["RS256"], "kid": k.rsa.kid}, k.issuer.claims(), b"x" * 256),
    "HS256 keyed with the public key": hs256_with_the_public_key,
    "unknown kid": lambda k: k.issuer.token(new_key("never-published")),
    "tampered payload": tampered,
    "another key with the same kid": lambda k: k.issuer.token(new_key(k.rsa.kid)),
    "RS256 header on the EC key's kid": lambda k: jwt.encode(k.issuer.claims(), k.rsa.private, algorithm="RS256",
                                                             headers={"kid": k.ec.kid}),
    "ES256 signed by another EC key": lambda k: k.issuer.token(new_key(k.ec.kid, "ES256")),
    "missing sub": lambda k: k.issuer.token(k.rsa, sub=None),
    "malformed": lambda k: "not.a-jwt",
    "two parts": lambda k: ".".join(k.issuer.token(k.rsa).split(".")[:2]),
    "signature stripped": lambda k: k.issuer.token(k.rsa).rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_or_invalid_token_is_a_401_and_nothing_is_stored(server: Server, keys: Keys, case: str) -> None:
    status, headers, body = chat(server, FORGED[case](keys), {"message": f"as alice? ({case})", "actor_id": "alice"},
                                 session=f"forged-{len(case)}")
    assert status == 401, (case, body)
    assert body["error"] and "Traceback" not in body["error"]
    assert headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # nothing was read or written as alice: her (valid) session list is empty of the forged sessions
    status, _, sessions = chat(server, keys.issuer.token(keys.rsa), {"action": "list_sessions"})
    assert status == 200
    assert all(not s["session_id"].startswith("forged-") for s in sessions["sessions"])


def test_a_valid_rs256_token_is_accepted_and_its_sub_is_the_actor(server: Server, keys: Keys) -> None:
    status, _, body = chat(server, keys.issuer.token(keys.rsa, sub="carol"), session="rs")
    assert (status, body["actor_id"], body["message_count"]) == (200, "carol", 1)


def test_a_valid_es256_token_is_accepted(server: Server, keys: Keys) -> None:
    status, _, body = chat(server, keys.issuer.token(keys.ec, sub="dave"), session="es")
    assert (status, body["actor_id"]) == (200, "dave")


def test_a_token_with_only_azp_names_its_client(server: Server, keys: Keys) -> None:
    assert chat(server, keys.issuer.token(keys.rsa, client_id=None, azp=CLIENT))[0] == 200
    assert chat(server, keys.issuer.token(keys.rsa, client_id=None, azp="another-client"))[0] == 401


def test_clock_skew_within_the_leeway_is_accepted(server: Server, keys: Keys) -> None:
    assert chat(server, keys.issuer.token(keys.rsa, exp=int(time.time()) - 5))[0] == 200


def test_no_token_is_a_401_with_a_bearer_challenge(server: Server) -> None:
    status, headers, body = chat(server, None, {"message": "hi", "actor_id": "alice"})
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert "bearer token" in body["error"]


def test_a_token_in_the_query_string_only_is_not_a_credential(server: Server, keys: Keys) -> None:
    token = keys.issuer.token(keys.rsa)
    status, headers, _ = call(server, "POST", f"/invocations?access_token={token}", {"message": "hi"},
                              {SESSION_HEADER: "q"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["Basic YWxpY2U6c2VjcmV0", "Token {token}", "{token}", "Bearer", "Bearer   "])
def test_a_wrong_scheme_or_an_empty_bearer_is_a_401(server: Server, keys: Keys, scheme: str) -> None:
    value = scheme.format(token=keys.issuer.token(keys.rsa))
    status, _, body = call(server, "POST", "/invocations", {"message": "hi"}, {"Authorization": value})
    assert status == 401, body


def test_two_different_authorization_headers_are_refused(server: Server, keys: Keys) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Authorization", f"Bearer {keys.issuer.token(keys.rsa, sub='alice')}")
        connection.putheader("Authorization", f"Bearer {keys.issuer.token(keys.rsa, sub='bob')}")
        body = json.dumps({"message": "hi"}).encode()
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        assert response.status == 400 and "authorization" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_ping_stays_open_without_a_token(server: Server) -> None:
    status, _, body = call(server, "GET", "/ping")
    assert status == 200 and body["status"]


def test_other_routes_need_a_token_too(server: Server) -> None:
    assert call(server, "GET", "/")[0] == 401


def test_a_body_or_header_actor_other_than_the_token_subject_is_a_403(server: Server, keys: Keys) -> None:
    token = keys.issuer.token(keys.rsa, sub="erin")
    status, _, body = chat(server, token, {"message": "hi", "actor_id": "frank"}, session="mismatch")
    assert status == 403 and "actor" in body["error"]
    status, _, body = chat(server, token, {"message": "hi"}, session="mismatch", **{ACTOR_HEADER: "frank"})
    assert status == 403
    assert chat(server, token, {"message": "hi", "actor_id": "erin"}, session="mismatch")[0] == 200
    # frank's memory was neither read nor written
    frank = keys.issuer.token(keys.rsa, sub="frank")
    assert chat(server, frank, {"action": "list_sessions"})[2]["sessions"] == []


def test_each_subject_sees_only_its_own_memory(server: Server, keys: Keys) -> None:
    grace, heidi = (keys.issuer.token(keys.rsa, sub=name) for name in ("grace", "heidi"))
    assert chat(server, grace, {"message": "my locker code is 4711"}, session="g1")[0] == 200
    status, _, sessions = chat(server, heidi, {"action": "list_sessions"})
    assert (status, sessions["sessions"]) == (200, [])
    status, _, history = chat(server, heidi, {"action": "get_history"}, session="g1")
    assert status == 200 and history["turns"] == []


def test_start_up_says_tokens_are_verified(server: Server, issuer: OIDCIssuer) -> None:
    [line] = [line for line in server.log().splitlines() if "auth=<" in line]
    assert "auth=<bearer tokens verified>" in line and f"issuer={issuer.issuer}" in line
    assert f"audiences={AUDIENCE}" in line and f"clients={CLIENT}" in line


# -- key rotation: an unknown kid refetches the keys, at most once per interval ---------------

def test_a_rotated_key_is_fetched_once_and_forged_kids_do_not_hammer_the_issuer(tmp_path: Path) -> None:
    with OIDCIssuer() as issuer:
        first = issuer.publish(new_key("first"))
        server = Server(auth_env(issuer, tmp_path)).start()
        try:
            assert chat(server, issuer.token(first))[0] == 200
            fetched = issuer.jwks_fetches
            rotated = issuer.publish(new_key("rotated"))  # the issuer rotates: tokens now name a key we lack
            status, _, body = chat(server, issuer.token(rotated, sub="ivan"))
            assert (status, body["actor_id"]) == (200, "ivan")
            assert issuer.jwks_fetches == fetched + 1  # one refetch picked the new key up
            for n in range(20):  # tokens naming keys nobody published: refused, and no refetch within 30 s
                assert chat(server, issuer.token(new_key(f"forged-{n}")))[0] == 401
            assert issuer.jwks_fetches == fetched + 1
            assert chat(server, issuer.token(rotated))[0] == 200
        finally:
            server.stop()


# -- start-up ------------------------------------------------------------------------------------

def test_an_unreachable_issuer_is_one_line_naming_auth_discovery_url(tmp_path: Path) -> None:
    with OIDCIssuer() as issuer:
        url = issuer.discovery_url
    server = Server(auth_env(issuer, tmp_path, AUTH_DISCOVERY_URL=url), log_path=tmp_path / "log")
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    assert server.process is not None and server.process.returncode == 2
    lines = server.log().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: AUTH_DISCOVERY_URL=")
    assert "could not be read" in lines[0]


def test_a_discovery_url_that_is_not_a_discovery_document_is_one_line(tmp_path: Path) -> None:
    with OIDCIssuer() as issuer:
        server = Server(auth_env(issuer, tmp_path, AUTH_DISCOVERY_URL=issuer.base_url + "/jwks"),
                        log_path=tmp_path / "log")
        with pytest.raises(RuntimeError, match="server exited"):
            server.start()
    [line] = server.log().strip().splitlines()
    assert line.startswith("configuration error: AUTH_DISCOVERY_URL=") and "no 'issuer'" in line


def test_without_auth_settings_the_token_subject_is_trusted_as_before(tmp_path: Path) -> None:
    """AUTH_* unset: the runtime's authorizer is trusted to have checked the token (docs/guarantees.md)."""
    server = Server({"SESSION_DB": str(tmp_path / "s.db"), "LONG_TERM_MEMORY": "off"},
                    log_path=tmp_path / "log").start()
    try:
        unverified = jwt.encode({"sub": "judy"}, "any-key-the-runtime-checked-32-bytes", algorithm="HS256")
        status, _, body = chat(server, unverified)
        assert (status, body["actor_id"]) == (200, "judy")
        assert chat(server, None, {"message": "hi"})[0] == 200
        assert "auth=<off>" in server.log()
    finally:
        server.stop()
