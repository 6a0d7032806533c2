"""Settings read once from the environment and validated at start-up.

Every setting has one name, one default and one check; a bad value raises
``ConfigError`` whose message names the variable, so a deployment fails at
start-up with one clear line instead of on the first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import ConfigError

MODEL_PROVIDERS = ("bedrock", "local", "openai", "ollama", "echo")
DEFAULT_BEDROCK_MODEL_ID = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


@dataclass(frozen=True)
class ProviderDefaults:
    """What ``MAX_TOKENS``, ``SUMMARY_MAX_TOKENS``, ``MODEL_TIMEOUT_S`` and ``MEMORY_MAX_TOKENS`` are when unset.

    They depend on the model: a 135M model on two CPU cores needs short replies and a short
    history to answer in seconds, Bedrock's models take far more. ``memory_max_tokens`` None:
    derived from the local model's context (see ``Settings.for_provider``).
    """

    max_tokens: int
    summary_max_tokens: int
    model_timeout_s: float
    memory_max_tokens: int | None


PROVIDER_DEFAULTS = {
    "local": ProviderDefaults(max_tokens=160, summary_max_tokens=160, model_timeout_s=60.0, memory_max_tokens=None),
    "bedrock": ProviderDefaults(max_tokens=512, summary_max_tokens=400, model_timeout_s=120.0,
                                memory_max_tokens=32_000),
    # a server the user runs (Ollama, LM Studio, vLLM, llama.cpp): its context is unknown here, so the
    # history is sized for a 4,096-token context; set MEMORY_MAX_TOKENS for a model that has more
    "openai": ProviderDefaults(max_tokens=512, summary_max_tokens=256, model_timeout_s=120.0,
                               memory_max_tokens=2_000),
    "ollama": ProviderDefaults(max_tokens=512, summary_max_tokens=256, model_timeout_s=120.0,
                               memory_max_tokens=2_000),
    "echo": ProviderDefaults(max_tokens=512, summary_max_tokens=256, model_timeout_s=60.0, memory_max_tokens=32_000),
}
#: tokens of the local model's per-slot context kept for the system prompt and the new message
LOCAL_PROMPT_RESERVE = 512
#: the smallest history budget the local defaults may leave (else LOCAL_MODEL_CONTEXT is too small)
MIN_MEMORY_TOKENS = 128
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
#: DynamoDB's own rule for table names
DYNAMODB_TABLE_NAME = re.compile(r"[a-zA-Z0-9_.-]{3,255}")
#: a host name as HOST may give it (letters, digits, '-' and '.'), when it is not an IP address
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
#: bytes one character of ``message`` can take in a JSON body: an escaped surrogate pair (``\ud83d\ude00``)
BYTES_PER_CHAR = 12
#: room in a body for everything but ``message`` (ids, flags, JSON punctuation)
BODY_OVERHEAD_BYTES = 64 * 1024
SWITCH_ON = ("on", "1", "true")
SWITCH_OFF = ("off", "0", "false")
#: where AgentCore's long-term records of an actor live: the starter toolkit's strategies write
#: ``/users/{actorId}/facts/`` and ``/users/{actorId}/preferences/``; the search reads the whole subtree
DEFAULT_LTM_NAMESPACE = "/users/{actorId}/"


def default_summary_batch(memory_k: int) -> int:
    """``SUMMARY_BATCH``'s default: half the window, so a long session pays one summary call per k/2 turns."""
    return max(1, memory_k // 2)


def _int(env: Mapping[str, str], name: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name}={value} must be {bound}")
    return value


def _float(env: Mapping[str, str], name: str, default: float | None = None, *, minimum: float,
           maximum: float) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise ConfigError(f"{name}={raw} must be between {minimum:g} and {maximum:g}")
    return value


def _host(env: Mapping[str, str]) -> str | None:
    raw = env.get("HOST", "").strip()
    if not raw:
        return None
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not HOST_NAME.fullmatch(raw):
            raise ConfigError(f"HOST={raw!r} is neither an IP address nor a host name") from None
    return raw


def default_max_body_bytes(max_message_chars: int) -> int:
    """``MAX_BODY_BYTES``' default: the longest ``message`` in its most expensive JSON form, plus 64 KiB."""
    return max_message_chars * BYTES_PER_CHAR + BODY_OVERHEAD_BYTES


def _switch(env: Mapping[str, str], name: str, default: bool | None = None) -> bool | None:
    """on/off (1/0, true/false); ``default`` when unset."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in SWITCH_ON + SWITCH_OFF:
        raise ConfigError(f"{name}={raw!r} is not one of on, off")
    return raw in SWITCH_ON


def _ltm_namespace(env: Mapping[str, str]) -> str:
    value = (env.get("LTM_NAMESPACE") or DEFAULT_LTM_NAMESPACE).strip()
    rest = value.replace("{actorId}", "")
    if "{actorId}" not in value or "{" in rest or "}" in rest:
        raise ConfigError(f"LTM_NAMESPACE={value!r} must contain {{actorId}} and no other placeholder")
    return value


def _ltm_backend(env: Mapping[str, str], long_term_memory: bool | None) -> str | None:
    """``LTM_BACKEND`` (its names are ``longterm.registry``'s); refused when ``LONG_TERM_MEMORY`` says otherwise."""
    value = (env.get("LTM_BACKEND") or "").strip().lower() or None
    if value is None or long_term_memory is None:
        return value
    if long_term_memory != (value != "off"):  # off with a backend, or on with off
        switch = "on" if long_term_memory else "off"
        raise ConfigError(f"LONG_TERM_MEMORY={switch} contradicts LTM_BACKEND={value}: set one of them")
    return value


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} must start with http:// or https://")
    return raw.rstrip("/")


def _server_address(env: Mapping[str, str], name: str, default: str) -> str:
    """An HTTP server address: a URL, or ``host[:port]`` as Ollama's own ``OLLAMA_HOST`` is often written."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    url = raw if "://" in raw else f"http://{raw}"
    parsed = urlsplit(url)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{name}={raw!r} has a port that is not a number") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{name}={raw!r} is not an http(s) address such as http://127.0.0.1:11434")
    return url.rstrip("/")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the assistant reads from its environment."""

    #: ``MEMORY_BACKEND``, lower-cased; None (unset): the default of ``memory.registry.session_backend``
    #: (agentcore when a memory id is configured, else sqlite). Its names are checked there, at start-up
    memory_backend: str | None = None
    session_db: Path = Path(".data/sessions.db")
    sqlite_synchronous: str = "NORMAL"
    sqlite_busy_timeout_ms: int = 10_000
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "agentcore:"
    #: ``REDIS_CLUSTER``: ``REDIS_URL`` names one node of a Redis Cluster (redis-py's ``RedisCluster``)
    redis_cluster: bool = False
    dynamodb_table: str = "agentcore-sessions"
    #: ``DYNAMODB_ENDPOINT_URL``: e.g. DynamoDB Local; None: the region's AWS endpoint
    dynamodb_endpoint_url: str | None = None
    #: ``DYNAMODB_CREATE_TABLE``: create the table at start-up when it is missing
    dynamodb_create_table: bool = False
    #: ``DATABASE_URL``: MEMORY_BACKEND=postgres's libpq URL (may hold a password: never in repr or logs)
    database_url: str | None = field(default=None, repr=False)
    #: ``DATABASE_POOL_SIZE``: connections per store object at most
    database_pool_size: int = 10
    #: ``DATABASE_POOL_TIMEOUT_S``: how long a request waits for a free connection before its 503
    database_pool_timeout_s: float = 5.0
    #: ``DATABASE_STATEMENT_TIMEOUT_S``: how long a statement may run or wait on a lock before its 503 (0: the server's)
    database_statement_timeout_s: float = 10.0
    session_ttl: int | None = None
    memory_id: str | None = None
    aws_region: str = "us-west-2"
    memory_k: int = 10
    model_provider: str | None = None  # None: decided at start-up (bedrock with AWS credentials, else local)
    bedrock_model_id: str = DEFAULT_BEDROCK_MODEL_ID
    local_model_path: str | None = None
    #: ``LOCAL_MODEL_PARALLEL``: llama.cpp slots, i.e. replies the local model writes at the same time
    local_model_parallel: int = 2
    #: ``LOCAL_MODEL_CONTEXT``: tokens of context each slot has (prompt + history + reply)
    local_model_context: int = 2048
    openai_base_url: str | None = None
    openai_model: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    ollama_host: str = DEFAULT_OLLAMA_HOST
    ollama_model: str | None = None
    # None in the four below: the provider's default (PROVIDER_DEFAULTS), filled in by ``for_provider``
    #: ``MAX_TOKENS``: the reply's token cap
    max_tokens: int | None = None
    #: ``SUMMARY_MAX_TOKENS``: a summary's token cap (a summary cut there is kept, marked with "…")
    summary_max_tokens: int | None = None
    #: ``MODEL_TIMEOUT_S``: seconds one model call may take, queueing included; past it the turn fails with 503
    model_timeout_s: float | None = None
    #: ``MEMORY_MAX_TOKENS``: estimated tokens of stored turns put in front of the model at most
    memory_max_tokens: int | None = None
    max_message_chars: int = 32_000
    log_level: str = "INFO"
    log_format: str = "text"
    rolling_summary: bool = True
    #: ``SUMMARY_BATCH``: turns folded into the rolling summary per summariser call (1..memory_k);
    #: None: ``default_summary_batch(memory_k)``, see ``fold_batch``
    summary_batch: int | None = None
    #: ``SUMMARY_WORKERS``: threads that run rolling-summary folds after the replies (``hooks.folds``)
    summary_workers: int = 2
    port: int = 8080
    #: None: the runtime's choice (0.0.0.0 in a container, else 127.0.0.1), see ``service.connections.bind_host``
    host: str | None = None
    #: requests that may wait for a session while one of its turns runs; the next is refused with a 429
    session_queue_max: int = 8
    #: threads that run turns (the model call and the store I/O), shared by every session
    turn_workers: int = 32
    #: None: ``default_max_body_bytes(max_message_chars)``, see ``body_limit``
    max_body_bytes: int | None = None
    #: seconds a client has to send a request's head and body, from its first byte
    http_read_timeout_s: float = 10.0
    #: seconds a connection may stay open with no request in progress (fresh or kept alive)
    http_idle_timeout_s: float = 5.0
    #: None: as many as the process's file descriptor limit allows, see ``service.connections``
    max_connections: int | None = None
    #: ``DEV_UI``: serve the development chat page (``GET /``, ``ui/static``) beside the runtime's routes;
    #: off unless set, so a deployed runtime serves only ``/invocations`` and ``/ping``
    dev_ui: bool = False
    #: ``AUTH_DISCOVERY_URL``: an OIDC issuer's discovery document; set, every request but ``/ping`` needs a bearer
    #: token that issuer signed (``service.auth``), as the runtime's ``customJWTAuthorizer`` checks it; None: not here
    auth_discovery_url: str | None = None
    #: ``AUTH_ALLOWED_AUDIENCES``: the token's ``aud`` must be one of these (empty: ``aud`` not checked)
    auth_allowed_audiences: tuple[str, ...] = ()
    #: ``AUTH_ALLOWED_CLIENTS``: the token's ``client_id`` (or ``azp``) must be one of these (empty: not checked)
    auth_allowed_clients: tuple[str, ...] = ()

    @property
    def body_limit(self) -> int:
        """Longest accepted request body: ``MAX_BODY_BYTES``, else what ``MAX_MESSAGE_CHARS`` needs plus 64 KiB."""
        return self.max_body_bytes if self.max_body_bytes is not None else default_max_body_bytes(
            self.max_message_chars)

    #: ``LONG_TERM_MEMORY``: on/off; None (unset): ``LTM_BACKEND`` or its default decides
    long_term_memory: bool | None = None
    #: ``LTM_BACKEND``, lower-cased: where long-term records live (``off``: nowhere); None (unset): the session
    #: backend's default (``longterm.registry``, which checks the name at start-up)
    ltm_backend: str | None = None
    #: ``LTM_TOP_K``: long-term records injected before each answer (and ``search_memory``'s default)
    ltm_top_k: int = 5
    #: ``LTM_MIN_SCORE``: records scoring less are not injected. The score is P(the record answers the query)
    #: (``longterm.relevance``, fitted on two calibration sets of natural questions), the same at 10 records and
    #: at 10,000; 0.05 is the lowest threshold at which both sets get at most 0.3 records per question on a
    #: subject the user never mentioned (docs/longterm.md, "What reaches the model")
    ltm_min_score: float = 0.05
    #: ``LTM_MAX_TOKENS``: the injected records' budget in the memory block (estimated tokens)
    ltm_max_tokens: int = 600
    #: ``LTM_NAMESPACE``: the AgentCore namespace subtree searched for an actor's records
    ltm_namespace: str = DEFAULT_LTM_NAMESPACE
    #: ``LTM_DRAIN_S``: at shutdown, seconds spent adding vectors to records still without one (their text is
    #: stored already; the rest is embedded at the next start). Well under a runtime's 10 s SIGTERM grace
    ltm_drain_s: float = 3.0

    @property
    def ltm_db(self) -> Path:
        """The long-term SQLite file: beside ``SESSION_DB`` (``sessions.db`` -> ``sessions-longterm.db``)."""
        return self.session_db.with_name(f"{self.session_db.stem}-longterm{self.session_db.suffix or '.db'}")

    @property
    def fold_batch(self) -> int:
        """Turns per rolling-summary fold: ``SUMMARY_BATCH``, else half of ``MEMORY_K`` (at least 1)."""
        return self.summary_batch if self.summary_batch is not None else default_summary_batch(self.memory_k)

    def for_provider(self, provider: str) -> Settings:
        """These settings for ``provider``: every unset model limit gets that provider's default.

        The local model's history budget is what its per-slot context leaves after the reply,
        the rolling summary and ``LOCAL_PROMPT_RESERVE`` (system prompt and the new message);
        its ``SUMMARY_BATCH`` defaults to ``MEMORY_K`` (one summary call per k turns).
        """
        defaults = PROVIDER_DEFAULTS[provider]
        max_tokens = self.max_tokens if self.max_tokens is not None else defaults.max_tokens
        summary_max_tokens = (self.summary_max_tokens if self.summary_max_tokens is not None
                              else defaults.summary_max_tokens)
        memory_max_tokens = self.memory_max_tokens
        if provider == "local":
            max_tokens = min(max_tokens, self.local_model_context // 2)
            summary_max_tokens = min(summary_max_tokens, self.local_model_context // 4)
            if memory_max_tokens is None:
                memory_max_tokens = self.local_model_context - max_tokens - summary_max_tokens - LOCAL_PROMPT_RESERVE
                if memory_max_tokens < MIN_MEMORY_TOKENS:
                    raise ConfigError(
                        f"LOCAL_MODEL_CONTEXT={self.local_model_context} leaves {memory_max_tokens} tokens for the "
                        f"history after MAX_TOKENS={max_tokens}, SUMMARY_MAX_TOKENS={summary_max_tokens} and "
                        f"{LOCAL_PROMPT_RESERVE} for the prompt; raise it or set MEMORY_MAX_TOKENS"
                    )
        elif memory_max_tokens is None:
            memory_max_tokens = defaults.memory_max_tokens
        summary_batch = self.summary_batch
        if provider == "local" and summary_batch is None:
            # a summary costs the CPU its whole reply however few turns it folds: fold as many at once as the budget lets
            summary_batch = self.memory_k
        return replace(
            self, model_provider=provider, max_tokens=max_tokens, summary_max_tokens=summary_max_tokens,
            summary_batch=summary_batch,
            model_timeout_s=self.model_timeout_s if self.model_timeout_s is not None else defaults.model_timeout_s,
            memory_max_tokens=memory_max_tokens,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        memory_id = (env.get("MEMORY_ID") or env.get("BEDROCK_AGENTCORE_MEMORY_ID") or "").strip() or None
        backend = (env.get("MEMORY_BACKEND") or "").strip().lower() or None  # a name memory.registry checks
        if memory_id is not None and len(memory_id) < 12:
            raise ConfigError(f"MEMORY_ID={memory_id!r} is too short (AgentCore memory ids have at least 12 characters)")
        synchronous = (env.get("SQLITE_SYNCHRONOUS") or "NORMAL").strip().upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"SQLITE_SYNCHRONOUS={synchronous!r} is not one of NORMAL, FULL")
        log_level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        redis_url = (env.get("REDIS_URL") or cls.redis_url).strip()
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://")
        dynamodb_table = (env.get("DYNAMODB_TABLE") or cls.dynamodb_table).strip()
        if not DYNAMODB_TABLE_NAME.fullmatch(dynamodb_table):
            raise ConfigError(f"DYNAMODB_TABLE={dynamodb_table!r} is not a DynamoDB table name "
                              "(3-255 characters: letters, digits, _ . -)")
        endpoint = (env.get("DYNAMODB_ENDPOINT_URL") or "").strip() or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"DYNAMODB_ENDPOINT_URL={endpoint!r} must start with http:// or https://")
        memory_k = _int(env, "MEMORY_K", cls.memory_k, minimum=1, maximum=100)
        assert memory_k is not None
        summary_batch = _int(env, "SUMMARY_BATCH", None, minimum=1)
        if summary_batch is not None and summary_batch > memory_k:
            raise ConfigError(f"SUMMARY_BATCH={summary_batch} must be between 1 and MEMORY_K={memory_k}")
        local_model_path = (env.get("LOCAL_MODEL_PATH") or "").strip() or None
        if local_model_path and not Path(local_model_path).is_file():
            raise ConfigError(f"LOCAL_MODEL_PATH={local_model_path!r} is not a file")
        model_provider = _choice(env, "MODEL_PROVIDER", MODEL_PROVIDERS, None)
        openai_base_url = _url(env, "OPENAI_BASE_URL", None)
        openai_model = (env.get("OPENAI_MODEL") or "").strip() or None
        openai_api_key = (env.get("OPENAI_API_KEY") or "").strip() or None
        if model_provider == "openai":
            if not openai_model:
                raise ConfigError("MODEL_PROVIDER=openai needs OPENAI_MODEL (the model name the server serves)")
            if not openai_base_url and not openai_api_key:
                raise ConfigError("MODEL_PROVIDER=openai needs OPENAI_BASE_URL (an OpenAI-compatible server, e.g. "
                                  "http://127.0.0.1:8000/v1) or OPENAI_API_KEY (for api.openai.com)")
        ollama_model = (env.get("OLLAMA_MODEL") or "").strip() or None
        if model_provider == "ollama" and not ollama_model:
            raise ConfigError("MODEL_PROVIDER=ollama needs OLLAMA_MODEL (e.g. llama3.2:1b, as `ollama list` names it)")
        long_term_memory = _switch(env, "LONG_TERM_MEMORY")
        ltm_backend = _ltm_backend(env, long_term_memory)
        return cls(
            memory_backend=backend,
            session_db=Path((env.get("SESSION_DB") or "").strip() or cls.session_db),
            sqlite_synchronous=synchronous,
            sqlite_busy_timeout_ms=_int(env, "SQLITE_BUSY_TIMEOUT_MS", cls.sqlite_busy_timeout_ms, minimum=0,
                                        maximum=600_000),
            redis_url=redis_url,
            key_prefix=env.get("KEY_PREFIX", cls.key_prefix),
            redis_cluster=_switch(env, "REDIS_CLUSTER", cls.redis_cluster),
            dynamodb_table=dynamodb_table,
            dynamodb_endpoint_url=endpoint,
            dynamodb_create_table=_switch(env, "DYNAMODB_CREATE_TABLE", cls.dynamodb_create_table),
            database_url=(env.get("DATABASE_URL") or "").strip() or None,
            database_pool_size=_int(env, "DATABASE_POOL_SIZE", cls.database_pool_size, minimum=1, maximum=1000),
            database_pool_timeout_s=_float(env, "DATABASE_POOL_TIMEOUT_S", cls.database_pool_timeout_s, minimum=0.1,
                                           maximum=600),
            database_statement_timeout_s=_float(env, "DATABASE_STATEMENT_TIMEOUT_S", cls.database_statement_timeout_s,
                                                minimum=0, maximum=3600),
            session_ttl=_int(env, "SESSION_TTL", None, minimum=1),
            memory_id=memory_id,
            aws_region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.aws_region).strip(),
            memory_k=memory_k,
            model_provider=model_provider,
            bedrock_model_id=(env.get("BEDROCK_MODEL_ID") or cls.bedrock_model_id).strip(),
            local_model_path=local_model_path,
            local_model_parallel=_int(env, "LOCAL_MODEL_PARALLEL", cls.local_model_parallel, minimum=1, maximum=16),
            local_model_context=_int(env, "LOCAL_MODEL_CONTEXT", cls.local_model_context, minimum=512,
                                     maximum=131_072),
            openai_base_url=openai_base_url,
            openai_model=openai_model,
            openai_api_key=openai_api_key,
            ollama_host=_server_address(env, "OLLAMA_HOST", DEFAULT_OLLAMA_HOST),
            ollama_model=ollama_model,
            max_tokens=_int(env, "MAX_TOKENS", None, minimum=1, maximum=32_000),
            summary_max_tokens=_int(env, "SUMMARY_MAX_TOKENS", None, minimum=16, maximum=8_000),
            model_timeout_s=_float(env, "MODEL_TIMEOUT_S", minimum=1, maximum=3_600),
            memory_max_tokens=_int(env, "MEMORY_MAX_TOKENS", None, minimum=1, maximum=1_000_000),
            max_message_chars=_int(env, "MAX_MESSAGE_CHARS", cls.max_message_chars, minimum=1),
            log_level=log_level,
            log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS, cls.log_format),
            rolling_summary=_switch(env, "ROLLING_SUMMARY", cls.rolling_summary),
            summary_batch=summary_batch,
            summary_workers=_int(env, "SUMMARY_WORKERS", cls.summary_workers, minimum=1, maximum=64),
            port=_int(env, "PORT", cls.port, minimum=1, maximum=65535),
            host=_host(env),
            session_queue_max=_int(env, "SESSION_QUEUE_MAX", cls.session_queue_max, minimum=0, maximum=10_000),
            turn_workers=_int(env, "TURN_WORKERS", cls.turn_workers, minimum=1, maximum=1024),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", None, minimum=1024),
            http_read_timeout_s=_float(env, "HTTP_READ_TIMEOUT_S", cls.http_read_timeout_s, minimum=0.1,
                                       maximum=3600),
            http_idle_timeout_s=_float(env, "HTTP_IDLE_TIMEOUT_S", cls.http_idle_timeout_s, minimum=0.1,
                                       maximum=3600),
            max_connections=_int(env, "MAX_CONNECTIONS", None, minimum=8, maximum=1_000_000),
            long_term_memory=long_term_memory,
            ltm_backend=ltm_backend,
            ltm_top_k=_int(env, "LTM_TOP_K", cls.ltm_top_k, minimum=1, maximum=50),
            ltm_min_score=_float(env, "LTM_MIN_SCORE", cls.ltm_min_score, minimum=0.0, maximum=1.0),
            ltm_max_tokens=_int(env, "LTM_MAX_TOKENS", cls.ltm_max_tokens, minimum=50, maximum=20_000),
            ltm_namespace=_ltm_namespace(env),
            ltm_drain_s=_float(env, "LTM_DRAIN_S", cls.ltm_drain_s, minimum=0.0, maximum=60.0),
            dev_ui=bool(_switch(env, "DEV_UI")),  # off unless set
            **_auth(env),
        )


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of names; set, it must name at least one and no empty one."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return ()
    names = tuple(part.strip() for part in raw.split(","))
    if not all(names):
        raise ConfigError(f"{name}={raw!r} has an empty name; list names separated by commas")
    return names


def _auth(env: Mapping[str, str]) -> dict[str, object]:
    """``AUTH_*``: what the runtime's ``customJWTAuthorizer`` is configured with, for a self-hosted server."""
    url = _url(env, "AUTH_DISCOVERY_URL", None)
    if url is not None and not urlsplit(url).hostname:
        raise ConfigError(f"AUTH_DISCOVERY_URL={url!r} names no host")
    audiences = _names(env, "AUTH_ALLOWED_AUDIENCES")
    clients = _names(env, "AUTH_ALLOWED_CLIENTS")
    if url is None and (audiences or clients):
        raise ConfigError("AUTH_ALLOWED_AUDIENCES / AUTH_ALLOWED_CLIENTS are set but AUTH_DISCOVERY_URL is not: "
                          "set it to the issuer's discovery URL (.../.well-known/openid-configuration)")
    if url is not None and not (audiences or clients):
        raise ConfigError("AUTH_DISCOVERY_URL needs AUTH_ALLOWED_AUDIENCES or AUTH_ALLOWED_CLIENTS: without either, "
                          "a token the issuer signed for any other application would be accepted")
    return {"auth_discovery_url": url, "auth_allowed_audiences": audiences, "auth_allowed_clients": clients}
