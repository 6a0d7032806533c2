"""A test-side AgentCore Memory data plane, answering through ``botocore.stub.Stubber``.

``FakeMemoryService`` keeps events per (memoryId, actorId, sessionId) and answers
``CreateEvent`` / ``ListEvents`` / ``DeleteEvent`` / ``ListSessions`` the way the
service does: events listed newest first, ``maxResults`` (default 20, at most
100) with ``nextToken`` paging, ``includePayloads``, event-metadata filters
(``EQUALS_TO``, ``EXISTS``, ``NOT_EXISTS``), idempotent ``clientToken`` (a
token seen before answers with the event it created, even one deleted since,
and stores nothing), and ``ValidationException`` for what botocore itself does
not check (id patterns, maximum lengths). ``ListSessions`` returns an actor's
sessions with their ``createdAt``, in no particular order (the service
documents none: here, by session id), its ``HAS_EVENTS`` filter leaving out
sessions whose events were all deleted (the service drops those after a day).

``attach(client)`` puts a ``Stubber`` on the client the SDK built. Nothing
leaves the process, yet nothing is hand-waved: botocore validates every
request against the real ``bedrock-agentcore`` model before the fake sees
it, and the Stubber validates every answer against the same model before
the SDK sees it. Explicitly queued stubs (``stubber.add_response`` /
``add_client_error``) still take precedence, so a test can pin exact calls.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

MEMORY_ID = "assistantMemory-a1B2c3D4e5"


class ServiceError(Exception):
    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _patterns(client: Any) -> dict[str, re.Pattern[str]]:
    model = client.meta.service_model
    return {
        name: re.compile(model.shape_for(name).metadata["pattern"])
        for name in ("MemoryId", "ActorId", "SessionId", "EventId", "MetadataKey", "MetadataValueStringValueString")
    }


class FakeMemoryService:
    """The service's state and rules; one instance may serve several clients (a store reopened)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        self.created: dict[tuple[str, str, str], datetime] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._failures: dict[str, deque[ServiceError]] = defaultdict(deque)
        self._tokens: dict[str, dict[str, Any]] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._patterns: dict[str, re.Pattern[str]] = {}

    def attach(self, client: Any) -> FakeStubber:
        self._patterns = self._patterns or _patterns(client)
        stubber = FakeStubber(client, self)
        stubber.activate()
        return stubber

    def fail(self, operation: str, code: str, status: int, times: int = 1, message: str = "injected") -> None:
        """The next ``times`` calls of ``operation`` fail as the service would with ``code``."""
        for _ in range(times):
            self._failures[operation].append(ServiceError(code, status, message))

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    # -- the service -----------------------------------------------------------------------------

    def answer(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((operation, params))
            if self._failures[operation]:
                raise self._failures[operation].popleft()
            self._check_ids(params)
            if operation == "CreateEvent":
                return self._create(params)
            if operation == "ListEvents":
                return self._list(params)
            if operation == "DeleteEvent":
                return self._delete(params)
            if operation == "ListSessions":
                return self._list_sessions(params)
        raise NotImplementedError(f"the fake AgentCore Memory does not implement {operation}")

    def _invalid(self, message: str) -> ServiceError:
        return ServiceError("ValidationException", 400, message)

    def _check(self, shape: str, value: str, field: str) -> None:
        if not self._patterns[shape].fullmatch(value):
            raise self._invalid(f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
                                f"Member must satisfy regular expression pattern: {self._patterns[shape].pattern}")

    def _check_ids(self, params: dict[str, Any]) -> None:
        self._check("MemoryId", params["memoryId"], "memoryId")
        self._check("ActorId", params["actorId"], "actorId")
        if len(params["actorId"]) > 255:
            raise self._invalid("actorId is longer than 255")
        if "sessionId" in params:
            self._check("SessionId", params["sessionId"], "sessionId")
            if len(params["sessionId"]) > 100:
                raise self._invalid("sessionId is longer than 100")
        if "eventId" in params:
            self._check("EventId", params["eventId"], "eventId")

    def _create(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params.get("clientToken")
        if token is not None and token in self._tokens:
            return {"event": copy.deepcopy(self._tokens[token])}
        payload = params["payload"]
        if len(payload) > 100:
            raise self._invalid("payload has more than 100 items")
        for item in payload:
            if len(item) != 1:
                raise self._invalid("each payload item holds exactly one of conversational, blob, json")
            text = item.get("conversational", {}).get("content", {}).get("text")
            if text is not None and len(text) > 100_000:
                raise self._invalid("content text is longer than 100000")
            if "blob" in item:
                json.dumps(item["blob"])  # a document must be JSON
        metadata = params.get("metadata") or {}
        if len(metadata) > 15:
            raise self._invalid("metadata has more than 15 entries")
        for key, value in metadata.items():
            self._check("MetadataKey", key, "metadata.key")
            self._check("MetadataValueStringValueString", value.get("stringValue", ""), "metadata.value")
        if "branch" in params:
            raise NotImplementedError("the fake AgentCore Memory does not implement branches")
        timestamp = params["eventTimestamp"]
        if not isinstance(timestamp, datetime):
            timestamp = datetime.fromtimestamp(float(timestamp), tz=timezone.utc)
        seq = next(self._seq)
        event = {
            "memoryId": params["memoryId"],
            "actorId": params["actorId"],
            "sessionId": params.get("sessionId", "default"),
            "eventId": f"{int(timestamp.timestamp() * 1000)}#{seq:08x}",
            "eventTimestamp": timestamp,
            "payload": copy.deepcopy(payload),
        }
        if metadata:
            event["metadata"] = copy.deepcopy(metadata)
        event["_seq"] = seq
        key = (event["memoryId"], event["actorId"], event["sessionId"])
        self.events[key].append(event)
        self.created.setdefault(key, datetime.now(timezone.utc))
        if token is not None:
            self._tokens[token] = self._public(event)
        return {"event": self._public(event)}

    @staticmethod
    def _public(event: dict[str, Any], payloads: bool = True) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in event.items() if not k.startswith("_")}
        if not payloads:
            out["payload"] = []
        return out

    @staticmethod
    def _matches(event: dict[str, Any], expressions: list[dict[str, Any]]) -> bool:
        metadata = event.get("metadata") or {}
        for expression in expressions:
            key = expression["left"]["metadataKey"]
            operator = expression["operator"]
            if operator == "EXISTS" and key not in metadata:
                return False
            if operator == "NOT_EXISTS" and key in metadata:
                return False
            if operator == "EQUALS_TO" and metadata.get(key) != expression["right"]["metadataValue"]:
                return False
        return True

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        size = params.get("maxResults", 20)
        if not 1 <= size <= 100:
            raise self._invalid("maxResults must be between 1 and 100")
        filters = params.get("filter") or {}
        if "branch" in filters:
            raise NotImplementedError("the fake AgentCore Memory does not implement branches")
        expressions = filters.get("eventMetadata") or []
        if "eventMetadata" in filters and not 1 <= len(expressions) <= 5:
            raise self._invalid("eventMetadata takes 1-5 expressions")
        key = (params["memoryId"], params["actorId"], params["sessionId"])
        events = [e for e in self.events.get(key, []) if self._matches(e, expressions)]
        events.sort(key=lambda e: (e["eventTimestamp"], e["_seq"]), reverse=True)  # newest first
        start = int(params["nextToken"]) if params.get("nextToken") else 0
        page = events[start:start + size]
        response: dict[str, Any] = {
            "events": [self._public(e, params.get("includePayloads", True)) for e in page],
        }
        if start + size < len(events):
            response["nextToken"] = str(start + size)
        return response

    def _list_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        size = params.get("maxResults", 20)
        if not 1 <= size <= 100:
            raise self._invalid("maxResults must be between 1 and 100")
        has_events = (params.get("filter") or {}).get("eventFilter") == "HAS_EVENTS"
        sessions = sorted(
            (session_id, created) for (memory_id, actor_id, session_id), created in self.created.items()
            if memory_id == params["memoryId"] and actor_id == params["actorId"]
            and (not has_events or self.events.get((memory_id, actor_id, session_id)))
        )
        start = int(params["nextToken"]) if params.get("nextToken") else 0
        response: dict[str, Any] = {"sessionSummaries": [
            {"sessionId": session_id, "actorId": params["actorId"], "createdAt": created}
            for session_id, created in sessions[start:start + size]
        ]}
        if start + size < len(sessions):
            response["nextToken"] = str(start + size)
        return response

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["memoryId"], params["actorId"], params["sessionId"])
        events = self.events.get(key, [])
        for i, event in enumerate(events):
            if event["eventId"] == params["eventId"]:
                del events[i]
                return {"eventId": params["eventId"]}
        raise ServiceError("ResourceNotFoundException", 404, f"event {params['eventId']} not found")


class FakeStubber(Stubber):
    """A Stubber whose answers come from a ``FakeMemoryService`` (queued stubs first)."""

    def __init__(self, client: Any, service: FakeMemoryService) -> None:
        super().__init__(client)
        self.service = service

    def _assert_expected_params(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                                **kwargs: Any) -> None:
        if self._queue:
            super()._assert_expected_params(model, params, context, **kwargs)
            return
        # the same dict is validated and serialised after this handler (idempotency token included)
        context["fake_agentcore_params"] = params

    def _get_response_handler(self, model: Any, params: dict[str, Any], context: dict[str, Any],
                              **kwargs: Any) -> Any:
        if self._queue:
            return super()._get_response_handler(model, params, context, **kwargs)
        request = copy.deepcopy(context.pop("fake_agentcore_params"))
        try:
            body = self.service.answer(model.name, request)
        except ServiceError as e:
            error = {
                "Error": {"Code": e.code, "Message": e.message},
                "ResponseMetadata": {"HTTPStatusCode": e.status},
                "message": e.message,
            }
            return AWSResponse(None, e.status, {}, None), error
        self._validate_operation_response(model.name, body)
        return AWSResponse(None, 200, {}, None), body
