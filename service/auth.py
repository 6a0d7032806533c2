"""Bearer tokens checked here when self-hosted, as the AgentCore runtime's JWT authorizer checks them there.

On the runtime, its ``customJWTAuthorizer`` (``discoveryUrl``, ``allowedAudience``, ``allowedClients``)
verifies the caller's token before a request reaches us. A self-hosted server (replicas behind a load
balancer) has nothing in front of it, so ``AUTH_DISCOVERY_URL``, ``AUTH_ALLOWED_AUDIENCES`` and
``AUTH_ALLOWED_CLIENTS`` configure the same check here (``service.access`` runs it on every request
but ``/ping``):

- the issuer's discovery document is read at start-up (a failure is one ``ConfigError`` line), and its
  ``jwks_uri`` gives the keys (PyJWT's ``PyJWKClient``: fetched, cached 5 minutes);
- only RS256 and ES256 signatures count, each with a key of its own type: a token saying ``none`` or
  ``HS256`` (an HMAC keyed with the public key, the classic forgery) is refused before any key is used;
- ``exp``, ``nbf``, ``iss`` (the discovery document's issuer) and ``aud`` are checked with a small leeway
  for clock skew, ``client_id`` (Cognito's access tokens) or ``azp`` against the allowed clients;
- a token naming a key the cached set lacks makes one refetch (the issuer rotated its keys), at most
  once per ``REFETCH_INTERVAL_S``, so forged ``kid`` values cannot make us hammer the issuer.

The verified token's ``sub`` is the actor (``service.identity`` reads it from the same header).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWKClient

from core.errors import ConfigError, IdentityProviderUnavailable, NoCredentials, Unauthorized
from core.settings import Settings

logger = logging.getLogger(__name__)

#: the signature algorithms accepted, each with the key type it must be verified with
ALGORITHMS: dict[str, type] = {"RS256": RSAPublicKey, "ES256": EllipticCurvePublicKey}
#: seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``
LEEWAY_S = 30
#: a token with a ``kid`` the cached keys lack refetches them at most this often (seconds)
REFETCH_INTERVAL_S = 30.0
#: seconds the fetched key set is trusted before it is fetched again (PyJWKClient's cache)
KEYS_LIFESPAN_S = 300
#: seconds a fetch of the discovery document or the key set may take
FETCH_TIMEOUT_S = 5.0
#: longest ``Authorization`` value looked at (a JWT is a few kilobytes at most)
MAX_TOKEN_CHARS = 16_384


@dataclass(frozen=True)
class Discovery:
    """What the issuer's OIDC discovery document says about its tokens."""

    url: str
    issuer: str
    jwks_uri: str


def discover(url: str, timeout: float = FETCH_TIMEOUT_S) -> Discovery:
    """Read the discovery document at ``url``; anything unusable is one ``ConfigError`` naming AUTH_DISCOVERY_URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) checked in settings
            document = json.loads(response.read(1_000_000))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(f"AUTH_DISCOVERY_URL={url!r} could not be read: {reason}") from e
    if not isinstance(document, dict):
        raise ConfigError(f"AUTH_DISCOVERY_URL={url!r} did not return a JSON object (an OIDC discovery document)")
    issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
    if not isinstance(issuer, str) or not issuer:
        raise ConfigError(f"AUTH_DISCOVERY_URL={url!r}: the document has no 'issuer'")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise ConfigError(f"AUTH_DISCOVERY_URL={url!r}: the document's 'jwks_uri' is not an http(s) URL")
    return Discovery(url, issuer, jwks_uri)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; ``Unauthorized`` for anything else."""
    if authorization is None or not authorization.strip():
        raise NoCredentials("this server needs a bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(f"the Authorization header uses the {scheme[:20]!r} scheme; this server takes 'Bearer'")
    token = token.strip()
    if not token:
        raise Unauthorized("the Authorization header has no token after 'Bearer'")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized(f"the bearer token is {len(token)} characters long; the limit is {MAX_TOKEN_CHARS}")
    return token


class TokenVerifier:
    """Checks bearer tokens against one issuer's keys and the allowed audiences and clients; thread-safe.

    ``clock`` (monotonic seconds) paces the unknown-``kid`` refetch; tests pass their own.
    """

    def __init__(self, discovery: Discovery, audiences: tuple[str, ...], clients: tuple[str, ...], *,
                 refetch_interval: float = REFETCH_INTERVAL_S, timeout: float = FETCH_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.discovery = discovery
        self.audiences = audiences
        self.clients = clients
        self.refetch_interval = refetch_interval
        self.clock = clock
        # PyJWKClient's own cooldown is off: the refetch below is paced from the last refetch, not from
        # any fetch, so a key rotated just after start-up is picked up at once
        self.keys = PyJWKClient(discovery.jwks_uri, cache_jwk_set=True, lifespan=KEYS_LIFESPAN_S, timeout=timeout,
                                cooldown_duration=0)
        self._refetch_lock = threading.Lock()
        self._last_refetch: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier | None:
        """The verifier ``AUTH_*`` configures (its keys fetched now), or None when AUTH_DISCOVERY_URL is unset."""
        if settings.auth_discovery_url is None:
            return None
        verifier = cls(discover(settings.auth_discovery_url), settings.auth_allowed_audiences,
                       settings.auth_allowed_clients)
        try:
            verifier.keys.get_signing_keys()
        except jwt.PyJWTError as e:
            raise ConfigError(f"AUTH_DISCOVERY_URL={settings.auth_discovery_url!r}: its keys "
                              f"({verifier.discovery.jwks_uri}) are not usable: {e}") from e
        return verifier

    def describe(self) -> str:
        checked = [f"issuer={self.discovery.issuer}"]
        if self.audiences:
            checked.append(f"audiences={','.join(self.audiences)}")
        if self.clients:
            checked.append(f"clients={','.join(self.clients)}")
        return " ".join(checked)

    def subject(self, authorization: str | None) -> str:
        """The ``sub`` of the request's verified bearer token; ``Unauthorized`` (401) when there is none that holds."""
        claims = self.claims(bearer_token(authorization))
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("the bearer token has no 'sub' claim, so it names no actor")
        return subject

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature, times, issuer, audience and client all check out."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthorized(f"the bearer token is not a readable JWT: {e}") from e
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise Unauthorized(f"the bearer token is signed with {str(algorithm)[:20]!r}; this server accepts only "
                               f"{', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the bearer token's header names no key ('kid')")
        key = self.signing_key(kid)
        if key.algorithm_name != algorithm or not isinstance(key.key, ALGORITHMS[algorithm]) or (
                algorithm == "ES256" and not isinstance(key.key.curve, SECP256R1)):
            raise Unauthorized(f"the bearer token says {algorithm} but its key {kid[:40]!r} is for "
                               f"{key.algorithm_name}")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[algorithm], issuer=self.discovery.issuer,
                audience=list(self.audiences) or None, leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(self.audiences)},
            )
        except jwt.PyJWTError as e:
            raise Unauthorized(f"the bearer token was refused: {e}") from e
        if self.clients:
            client = claims.get("client_id", claims.get("azp"))
            if client not in self.clients:
                raise Unauthorized("the bearer token was issued to a client this server does not accept "
                                   "('client_id' / 'azp' is not in AUTH_ALLOWED_CLIENTS)")
        return claims

    def signing_key(self, kid: str) -> PyJWK:
        """The issuer's key ``kid``: from the cached set, else from one refetch if none ran in the last interval."""
        try:
            key = PyJWKClient.match_kid(self.keys.get_signing_keys(), kid)
            if key is not None:
                return key
            with self._refetch_lock:  # concurrent requests with an unknown kid share one refetch
                now = self.clock()
                if self._last_refetch is not None and now - self._last_refetch < self.refetch_interval:
                    key = PyJWKClient.match_kid(self.keys.get_signing_keys(), kid)  # another thread's refetch
                else:
                    self._last_refetch = now
                    logger.info("refetching the issuer's keys: a token names key %r, which they lack", kid[:40])
                    key = PyJWKClient.match_kid(self.keys.get_signing_keys(refresh=True), kid)
        except jwt.PyJWKClientConnectionError as e:
            logger.warning("the issuer's keys (%s) could not be fetched: %s", self.discovery.jwks_uri, e)
            raise IdentityProviderUnavailable("the token issuer's keys could not be fetched; try again shortly") from e
        except jwt.PyJWTError as e:
            logger.warning("the issuer's keys (%s) are not usable: %s", self.discovery.jwks_uri, e)
            raise IdentityProviderUnavailable("the token issuer's keys are not usable right now") from e
        if key is None:
            raise Unauthorized(f"the bearer token names a key ({kid[:40]!r}) the issuer does not publish")
        return key
