"""Long-term memory on AgentCore: the service's own records, through bedrock-agentcore's Strands store.

With ``MEMORY_BACKEND=agentcore`` the session store already writes every
exchange as an event; the memory resource's long-term strategies (semantic
facts, user preferences, session summaries) extract records from those events
on the service, asynchronously. So here:

- ``search`` is ``AgentCoreMemoryStore.search`` (``RetrieveMemoryRecords``) over
  the actor's namespace subtree (``LTM_NAMESPACE``, ``/users/{actorId}/`` by
  default: the starter toolkit's facts and preferences namespaces);
- ``record_exchange`` does nothing: the service extracts;
- ``forget`` lists the actor's records (``ListMemoryRecords``, every page, the
  actor's subtree and its session summaries) and deletes them 100 at a time
  (``BatchDeleteMemoryRecords``); ``delete_session`` deletes the session's summary
  records (``/summaries/{actorId}/{sessionId}/``). Facts the service extracted do
  not say which session they came from, so they stay until ``forget``;
- ``delete_record`` reads the record (``GetMemoryRecord``) and deletes it
  (``DeleteMemoryRecord``) only if one of its namespaces is the actor's;
  ``list_records`` lists the actor's two subtrees, newest first.

What the service cannot promise: it has no conditional write, so a record its
strategies are still extracting from events written before a ``forget`` can
appear after it (extraction takes tens of seconds); ``forget`` again removes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import boto3
from bedrock_agentcore.memory.client import MemoryClient
from bedrock_agentcore.memory.integrations.strands.memorystore import AgentCoreMemoryStore, resolve_namespace
from botocore.exceptions import BotoCoreError, ClientError
from strands.memory import MemoryEntry

from core.errors import InvalidCursor, LongTermUnavailable
from longterm.base import LongTermMemory, Memory, MemoryPage

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: the starter toolkit's summary strategy namespace: records of one session
SUMMARY_NAMESPACE = "/summaries/{actorId}/{sessionId}/"
#: RetrieveMemoryRecords' searchQuery limit (characters)
MAX_QUERY_CHARS = 10_000
PAGE = 100  # ListMemoryRecords maxResults and BatchDeleteMemoryRecords records limit
#: the service's memoryRecordId (its model: 40-50 characters, ``mem-[a-zA-Z0-9-_]*``)
RECORD_ID = re.compile(r"mem-[a-zA-Z0-9_-]{36,46}")
#: AgentCoreMemoryStore needs a session id even for an actor-wide namespace (nothing is written with it)
SEARCH_SESSION = "longterm-search"


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, also inside a running event loop (a hook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _created_at(entry: MemoryEntry) -> float:
    raw = (entry.metadata or {}).get("_createdAt")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return 0.0


def _describe(e: Exception) -> str:
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', e)}"
    return f"{type(e).__name__}: {e}"


class AgentCoreLongTermMemory(LongTermMemory):
    """The memory resource's long-term records, scoped to the actor's namespace subtree."""

    name = "agentcore"

    def __init__(self, memory_id: str, namespace: str, region_name: str | None = None, *,
                 boto3_session: boto3.Session | None = None) -> None:
        self.memory_id = memory_id
        self.namespace = namespace
        self.client = MemoryClient(region_name=region_name, boto3_session=boto3_session, integration_source="strands")

    def describe(self) -> str:
        return (f"the AgentCore memory's own long-term records (namespace {self.namespace}), extracted by its "
                "strategies from the session events; nothing is written here")

    def store_for(self, actor_id: str) -> AgentCoreMemoryStore:
        """bedrock-agentcore's Strands ``MemoryStore`` for one actor (recall only)."""
        return AgentCoreMemoryStore(memory_id=self.memory_id, actor_id=actor_id, session_id=SEARCH_SESSION,
                                    namespace_path=self.namespace, client=self.client, name="agentcore-longterm")

    def search(self, actor_id: str, query: str, top_k: int,
               exclude: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
               min_score: float = 0.0) -> list[Memory]:
        """The service's best records; ``exclude`` cannot apply (its records carry no turn numbers)."""
        if top_k <= 0 or not query.strip():
            return []
        try:
            entries = run_sync(self.store_for(actor_id).search(query[:MAX_QUERY_CHARS],
                                                               {"max_search_results": min(top_k, PAGE)}))
        except (ClientError, BotoCoreError) as e:
            raise LongTermUnavailable(f"AgentCore long-term memory: RetrieveMemoryRecords failed: {_describe(e)}") from e
        found = [Memory(entry.content, "", 0, float((entry.metadata or {}).get("_score") or 0.0), _created_at(entry),
                        str((entry.metadata or {}).get("_id", "")), "fact") for entry in entries if entry.content]
        return [m for m in found if m.score >= min_score]

    def record_exchange(self, actor_id: str, session_id: str, turn: int, user: str, reply: str,
                        created_at: float, generation: int, epoch: int | None = None) -> None:
        """Nothing to do: the strategies extract records from the events the session store wrote."""

    def _record_ids(self, namespace_path: str) -> list[str]:
        return [summary["memoryRecordId"] for summary in self._summaries(namespace_path)]

    def _delete(self, record_ids: list[str]) -> int:
        deleted = 0
        failed: list[str] = []
        for start in range(0, len(record_ids), PAGE):
            chunk = record_ids[start:start + PAGE]
            answer = self.client.gmdp_client.batch_delete_memory_records(
                memoryId=self.memory_id, records=[{"memoryRecordId": r} for r in chunk])
            deleted += len(answer.get("successfulRecords") or [])
            failed += [f"{r['memoryRecordId']}: {r.get('errorMessage', r.get('status'))}"
                       for r in answer.get("failedRecords") or []]
        if failed:
            raise LongTermUnavailable(f"AgentCore long-term memory: {len(failed)} records were not deleted "
                                      f"({'; '.join(failed[:3])}); try again")
        return deleted

    def _delete_under(self, *namespaces: str) -> int:
        try:
            return self._delete([r for ns in namespaces for r in self._record_ids(ns)])
        except (ClientError, BotoCoreError) as e:
            raise LongTermUnavailable(f"AgentCore long-term memory: deleting records failed: {_describe(e)}") from e

    def delete_session(self, actor_id: str, session_id: str, generation: int) -> int:
        return self._delete_under(resolve_namespace(SUMMARY_NAMESPACE, actor_id, session_id))

    def forget(self, actor_id: str) -> int:
        summaries = SUMMARY_NAMESPACE.split("{sessionId}")[0]
        return self._delete_under(resolve_namespace(self.namespace, actor_id, ""),
                                  resolve_namespace(summaries, actor_id, ""))

    def _actor_prefixes(self, actor_id: str) -> tuple[str, str]:
        """The actor's namespace subtrees: its facts and preferences, and its session summaries."""
        return (resolve_namespace(self.namespace, actor_id, ""),
                resolve_namespace(SUMMARY_NAMESPACE.split("{sessionId}")[0], actor_id, ""))

    def delete_record(self, actor_id: str, record_id: str) -> bool:
        if not isinstance(record_id, str) or not RECORD_ID.fullmatch(record_id):
            return False  # not an id the service could have issued
        client = self.client.gmdp_client
        try:
            record = client.get_memory_record(memoryId=self.memory_id, memoryRecordId=record_id)["memoryRecord"]
            prefixes = self._actor_prefixes(actor_id)
            if not any(ns.startswith(prefixes) for ns in record.get("namespaces") or []):
                return False  # another actor's record: as if it did not exist
            client.delete_memory_record(memoryId=self.memory_id, memoryRecordId=record_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise LongTermUnavailable(f"AgentCore long-term memory: deleting a record failed: {_describe(e)}") from e
        except BotoCoreError as e:
            raise LongTermUnavailable(f"AgentCore long-term memory: deleting a record failed: {_describe(e)}") from e
        return True

    def list_records(self, actor_id: str, limit: int = 50, cursor: str | None = None) -> MemoryPage:
        """Newest first: the service lists in its own order, so every page lists the actor's records whole
        (``ListMemoryRecords``, 100 a call) and sorts them; the cursor is a position in that order."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        start = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor.startswith("a") or not cursor[1:].isascii() \
                    or not cursor[1:].isdigit() or len(cursor) > 12:
                raise InvalidCursor("'cursor' is not a cursor this server issued; leave it out to start from the "
                                    "newest record")
            start = int(cursor[1:])
        try:
            summaries = [s for prefix in self._actor_prefixes(actor_id) for s in self._summaries(prefix)]
        except (ClientError, BotoCoreError) as e:
            raise LongTermUnavailable(f"AgentCore long-term memory: ListMemoryRecords failed: {_describe(e)}") from e
        def created(summary: dict[str, Any]) -> float:
            return summary["createdAt"].timestamp() if summary.get("createdAt") else 0.0

        summaries.sort(key=lambda s: (created(s), s["memoryRecordId"]), reverse=True)
        records = [Memory((s.get("content") or {}).get("text", ""), "", 0, 1.0, created(s), s["memoryRecordId"], "fact")
                   for s in summaries[start:start + limit]]
        return MemoryPage(records, f"a{start + limit}" if start + limit < len(summaries) else None)

    def _summaries(self, namespace_path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"memoryId": self.memory_id, "namespacePath": namespace_path,
                                       "maxResults": PAGE}
            if token:
                request["nextToken"] = token
            page = self.client.gmdp_client.list_memory_records(**request)
            found += page.get("memoryRecordSummaries") or []
            token = page.get("nextToken")
            if not token:
                return found

    def close(self) -> None:
        self.client.gmdp_client.close()
        self.client.gmcp_client.close()
