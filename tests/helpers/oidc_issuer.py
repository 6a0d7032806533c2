"""A token issuer for tests: an OIDC discovery document and a JWKS served on loopback, keys made in the test.

``OIDCIssuer`` is what ``AUTH_DISCOVERY_URL`` points at (as Cognito's user pool would be): it publishes
the public halves of the keys it holds, counts how often its key set is fetched, and signs tokens; a test
adds (rotates) keys while the server runs.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.helpers.stand_in import StandInServer

DISCOVERY_PATH = "/.well-known/openid-configuration"
AUDIENCE = "assistant-api"
CLIENT = "web-client"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT put together by hand: what a forger sends (no library would sign ``alg: none`` for us)."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)])


@dataclass
class IssuerKey:
    kid: str
    algorithm: str  # RS256 or ES256
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.algorithm == "RS256" else ECAlgorithm.to_jwk
        return {**to_jwk(self.private.public_key(), as_dict=True), "kid": self.kid, "use": "sig",
                "alg": self.algorithm}


def new_key(kid: str, algorithm: str = "RS256") -> IssuerKey:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    return IssuerKey(kid, algorithm, private)


class OIDCIssuer(StandInServer):
    """Discovery on ``DISCOVERY_PATH``, the published keys on ``/jwks``; ``jwks_fetches`` counts key-set reads."""

    def __init__(self) -> None:
        self.published: list[IssuerKey] = []
        self.jwks_fetches = 0
        self.lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == DISCOVERY_PATH:
                    body = {"issuer": issuer.issuer, "jwks_uri": f"{issuer.issuer}/jwks",
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                elif self.path == "/jwks":
                    with issuer.lock:
                        issuer.jwks_fetches += 1
                        body = {"keys": [key.public_jwk for key in issuer.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def discovery_url(self) -> str:
        return self.base_url + DISCOVERY_PATH

    def publish(self, key: IssuerKey) -> IssuerKey:
        with self.lock:
            self.published.append(key)
        return key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A valid access token's claims (Cognito's shape plus ``aud``); ``None`` values are left out."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "alice", "aud": AUDIENCE, "client_id": CLIENT, "token_use": "access",
                  "iat": now, "exp": now + 300, **overrides}
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: IssuerKey, **overrides: Any) -> str:
        return jwt.encode(self.claims(**overrides), key.private, algorithm=key.algorithm, headers={"kid": key.kid})
