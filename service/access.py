"""Who may reach this server at all: a verified bearer token (``AUTH_*``), and with the chat page on, only its page.

``RequestGuard`` asks the ``AccessPolicy`` about every request before anything else runs:

- ``AUTH_DISCOVERY_URL`` set: every request but ``/ping`` needs a bearer token that ``service.auth``
  verifies (401 with ``WWW-Authenticate: Bearer`` otherwise), as the runtime's authorizer does;
- ``DEV_UI=on`` (``make run``): the server is a page for the browser of the person who started it, and a
  browser also runs every other web page that person opens. So a request whose ``Host`` is not this
  server's address (a DNS-rebinding page's own name) is refused, and so is a browser request sent by
  another page (its ``Origin`` is not the page's own, or ``Sec-Fetch-Site: cross-site``): a web page can
  neither read the server through a name of its own nor post to it (a ``text/plain`` or form POST needs no
  CORS preflight). ``curl`` and ``agentcore invoke --dev`` send ``Host: localhost:8080`` or ``127.0.0.1``
  and no ``Origin``, so they are served as before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from dataclasses import dataclass

from starlette.types import Scope

from core.errors import AssistantError, BadRequest, Forbidden
from core.settings import Settings
from service.auth import TokenVerifier

logger = logging.getLogger(__name__)

#: host names a browser on this machine reaches a loopback server by
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: bind addresses that mean "every interface": never a name a request is addressed to
WILDCARDS = ("0.0.0.0", "::", "[::]", "")  # nosec B104 - compared against, not bound


def headers_named(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name]


def _bracketed(host: str) -> str:
    """An address as a ``Host`` header writes it: IPv6 in brackets, names lowercased."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def split_host(value: str) -> tuple[str, int | None]:
    """``Host``'s name (lowercased, IPv6 in brackets) and port (None when absent or not a number)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.partition(":")
    return name, int(port) if port.isascii() and port.isdigit() else None if port else 80


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """What ``RequestGuard`` checks before a request runs (see the module's docstring)."""

    #: None: ``AUTH_DISCOVERY_URL`` unset, tokens are not checked here (the runtime's authorizer, or nobody)
    verifier: TokenVerifier | None = None
    #: ``DEV_UI``: browsers are expected, so ``Host`` and ``Origin`` are checked
    page_on: bool = False
    #: ``HOST``, accepted in a ``Host`` header besides the loopback names and the connection's own address
    host: str | None = None

    async def refusal(self, scope: Scope) -> AssistantError | None:
        """Why ``scope`` must not be served (a 4xx error to answer with), else None."""
        if self.page_on:
            problem = self.browser_problem(scope)
            if problem is not None:
                return Forbidden(problem)
        if self.verifier is not None and scope.get("path") != "/ping":
            values = headers_named(scope, b"authorization")
            if len(set(values)) > 1:
                return BadRequest(f"the header 'authorization' was sent {len(values)} times with different values; "
                                  "send it once")
            try:  # in a thread: an unknown key refetches the issuer's key set over the network
                await asyncio.to_thread(self.verifier.subject, values[0] if values else None)
            except AssistantError as e:
                return e
            except Exception:  # a bug must not let the request through, nor answer with a traceback
                logger.exception("checking a bearer token failed")
                return AssistantError("the bearer token could not be checked (a bug: the server log has the details)")
        return None

    def allowed_hosts(self, scope: Scope) -> set[str]:
        """Names this server answers to: loopback, the address the connection arrived at, ``HOST``."""
        names = set(LOOPBACK_NAMES)
        server = scope.get("server")
        for host in (server[0] if server else None, self.host):
            if host and host not in WILDCARDS:
                names.add(_bracketed(host))
        return names

    def browser_problem(self, scope: Scope) -> str | None:
        """Why a request must not reach the dev page's server: another site's name or page (None: it may)."""
        server = scope.get("server")
        port = server[1] if server else None
        hosts = headers_named(scope, b"host")
        if len(hosts) > 1:
            return "refused: the request has more than one Host header"
        if hosts:
            name, host_port = split_host(hosts[0])
            if name not in self.allowed_hosts(scope) or (port is not None and host_port != port):
                return (f"refused: the Host header {hosts[0][:100]!r} is not this server's address (DEV_UI=on "
                        f"answers only to localhost, 127.0.0.1, [::1] or its own address, with its port: a "
                        f"protection against DNS rebinding); open http://127.0.0.1:{port or 8080}/")
        origins = headers_named(scope, b"origin")
        if origins:
            own = f"http://{hosts[0].strip().lower()}" if hosts else None
            if any(origin.strip().lower() != own for origin in origins):
                return (f"refused: a browser request sent by the page at {origins[0][:100]!r}, not by this "
                        "server's own page (DEV_UI=on serves its page only to itself)")
        fetch_site = (headers_named(scope, b"sec-fetch-site") or [""])[0].strip().lower()
        navigation = scope.get("method") in ("GET", "HEAD") and (
            headers_named(scope, b"sec-fetch-mode") or [""])[0].strip().lower() == "navigate"
        if fetch_site == "cross-site" and not navigation:  # opening the page from a link elsewhere stays possible
            return ("refused: a cross-site browser request (Sec-Fetch-Site: cross-site); DEV_UI=on serves its "
                    "page only to itself")
        return None


_policies: dict[tuple[object, ...], AccessPolicy] = {}
_policies_lock = threading.Lock()


def access_policy(settings: Settings) -> AccessPolicy:
    """The policy ``settings`` ask for, built once (the issuer's discovery document is read then: ``ConfigError``)."""
    key = (settings.auth_discovery_url, settings.auth_allowed_audiences, settings.auth_allowed_clients,
           settings.dev_ui, settings.host)
    with _policies_lock:
        policy = _policies.get(key)
        if policy is None:
            policy = _policies[key] = AccessPolicy(TokenVerifier.from_settings(settings), settings.dev_ui,
                                                   settings.host)
    return policy


def log_access(policy: AccessPolicy, host: str) -> None:
    """The start-up line on who is trusted: verified tokens, or actors as sent (a warning off loopback)."""
    if policy.verifier is not None:
        logger.info("auth=<bearer tokens verified> | %s | every request but /ping needs one",
                    policy.verifier.describe())
    elif is_loopback(host):
        logger.info("auth=<off> | the actor is what the request names (a bearer token's 'sub', unverified): "
                    "trusted input, served on loopback")
    else:
        logger.warning("auth=<off> on %s | the actor is what the request names (a bearer token's 'sub', "
                       "unverified): trusted input. Behind the AgentCore runtime its JWT authorizer checks tokens; "
                       "self-hosted, set AUTH_DISCOVERY_URL (docs/http.md)", host)
    if policy.page_on and not is_loopback(host):
        logger.warning("DEV_UI=on on %s | the chat page, and every actor's memory behind it, can be reached from "
                       "other machines; the page is meant for HOST=127.0.0.1", host)
