"""``AUTH_*`` checked at start-up, the key refetch's pacing, an issuer that stops answering, the line on trust."""

from __future__ import annotations

import logging

import pytest

from core.errors import ConfigError, IdentityProviderUnavailable, NoCredentials, Unauthorized
from core.settings import Settings
from service.access import AccessPolicy, log_access
from service.auth import TokenVerifier, discover
from tests.helpers.oidc_issuer import AUDIENCE, CLIENT, OIDCIssuer, new_key

# -- settings ------------------------------------------------------------------------------------


def test_auth_is_off_unless_set() -> None:
    settings = Settings.from_env({})
    assert (settings.auth_discovery_url, settings.auth_allowed_audiences, settings.auth_allowed_clients) == (
        None, (), ())


def test_auth_settings_are_read_as_lists() -> None:
    settings = Settings.from_env({"AUTH_DISCOVERY_URL": "https://idp.example/.well-known/openid-configuration",
                                  "AUTH_ALLOWED_AUDIENCES": "api, other-api", "AUTH_ALLOWED_CLIENTS": "web"})
    assert settings.auth_discovery_url == "https://idp.example/.well-known/openid-configuration"
    assert settings.auth_allowed_audiences == ("api", "other-api")
    assert settings.auth_allowed_clients == ("web",)


@pytest.mark.parametrize(("env", "message"), [
    ({"AUTH_DISCOVERY_URL": "ftp://idp.example/x", "AUTH_ALLOWED_CLIENTS": "web"},
     "AUTH_DISCOVERY_URL='ftp://idp.example/x' must start with http:// or https://"),
    ({"AUTH_DISCOVERY_URL": "https:///x", "AUTH_ALLOWED_CLIENTS": "web"},
     "AUTH_DISCOVERY_URL='https:///x' names no host"),
    ({"AUTH_DISCOVERY_URL": "https://idp.example/x", "AUTH_ALLOWED_AUDIENCES": ","},
     "AUTH_ALLOWED_AUDIENCES=',' has an empty name"),
    ({"AUTH_DISCOVERY_URL": "https://idp.example/x", "AUTH_ALLOWED_CLIENTS": "web,,app"},
     "AUTH_ALLOWED_CLIENTS='web,,app' has an empty name"),
    ({"AUTH_ALLOWED_CLIENTS": "web"}, "AUTH_ALLOWED_AUDIENCES / AUTH_ALLOWED_CLIENTS are set but AUTH_DISCOVERY_URL"),
    ({"AUTH_DISCOVERY_URL": "https://idp.example/x"}, "AUTH_DISCOVERY_URL needs AUTH_ALLOWED_AUDIENCES or"),
])
def test_a_bad_auth_setting_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value)


# -- the verifier, against a real issuer ---------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unknown_kid_refetches_the_keys_at_most_once_per_interval() -> None:
    with OIDCIssuer() as issuer:
        first = issuer.publish(new_key("first"))
        clock = Clock()
        verifier = TokenVerifier(discover(issuer.discovery_url), (AUDIENCE,), (CLIENT,), refetch_interval=30,
                                 clock=clock)
        assert verifier.subject(f"Bearer {issuer.token(first)}") == "alice"
        assert issuer.jwks_fetches == 1
        with pytest.raises(Unauthorized, match="does not publish"):
            verifier.subject(f"Bearer {issuer.token(new_key('unknown'))}")
        assert issuer.jwks_fetches == 2  # the first unknown kid refetches
        rotated = issuer.publish(new_key("rotated"))
        clock.now += 29  # within the interval: no refetch, so the rotated key is not known yet
        with pytest.raises(Unauthorized, match="does not publish"):
            verifier.subject(f"Bearer {issuer.token(rotated)}")
        assert issuer.jwks_fetches == 2
        clock.now += 2  # past it: one refetch, and the rotated key is in
        assert verifier.subject(f"Bearer {issuer.token(rotated, sub='ivan')}") == "ivan"
        assert issuer.jwks_fetches == 3
        assert verifier.subject(f"Bearer {issuer.token(rotated)}") == "alice"  # cached now
        assert issuer.jwks_fetches == 3


def test_an_issuer_that_stops_answering_is_a_503_not_a_401() -> None:
    with OIDCIssuer() as issuer:
        first = issuer.publish(new_key("first"))
        verifier = TokenVerifier(discover(issuer.discovery_url), (AUDIENCE,), (), refetch_interval=0, timeout=2)
        assert verifier.subject(f"Bearer {issuer.token(first)}") == "alice"
    # the issuer is gone; a token naming a key we have not seen needs a fetch, which fails
    with pytest.raises(IdentityProviderUnavailable) as raised:
        verifier.subject(f"Bearer {issuer.token(new_key('rotated'))}")
    assert raised.value.status == 503
    assert verifier.subject(f"Bearer {issuer.token(first)}") == "alice"  # known keys keep working from the cache


def test_a_missing_token_is_no_credentials_and_names_the_scheme() -> None:
    with OIDCIssuer() as issuer:
        issuer.publish(new_key("first"))
        verifier = TokenVerifier(discover(issuer.discovery_url), (AUDIENCE,), ())
        with pytest.raises(NoCredentials, match="Authorization: Bearer"):
            verifier.subject(None)


def test_audiences_alone_do_not_check_the_client_and_clients_alone_do_not_check_aud() -> None:
    with OIDCIssuer() as issuer:
        key = issuer.publish(new_key("first"))
        by_audience = TokenVerifier(discover(issuer.discovery_url), (AUDIENCE,), ())
        by_client = TokenVerifier(discover(issuer.discovery_url), (), (CLIENT,))
        assert by_audience.subject(f"Bearer {issuer.token(key, client_id='any')}") == "alice"
        # a Cognito access token carries client_id and no aud
        assert by_client.subject(f"Bearer {issuer.token(key, aud=None)}") == "alice"
        with pytest.raises(Unauthorized):
            by_client.subject(f"Bearer {issuer.token(key, client_id='other', aud=None)}")


# -- the start-up line on trust ------------------------------------------------------------------

def test_auth_off_on_loopback_is_said_plainly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        log_access(AccessPolicy(), "127.0.0.1")
    [record] = caplog.records
    assert record.levelno == logging.INFO and "auth=<off>" in record.getMessage()
    assert "trusted input" in record.getMessage()


def test_auth_off_on_a_non_loopback_address_warns_that_actors_are_trusted_input(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        log_access(AccessPolicy(), "0.0.0.0")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "trusted input" in record.getMessage() and "AUTH_DISCOVERY_URL" in record.getMessage()


def test_the_page_on_a_non_loopback_address_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        log_access(AccessPolicy(page_on=True), "0.0.0.0")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("DEV_UI=on on 0.0.0.0" in message for message in warnings)
