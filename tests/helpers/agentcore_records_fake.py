"""AgentCore Memory's long-term records, added to the test-side fake data plane (``tests.helpers.agentcore_fake``).

``FakeRecordService`` keeps memory records (what the memory's strategies would
have extracted) and answers ``RetrieveMemoryRecords`` (namespace or namespace
subtree, ``topK``; a word-overlap score stands in for the service's semantic
search), ``ListMemoryRecords`` (``maxResults`` with ``nextToken`` paging),
``GetMemoryRecord``, ``DeleteMemoryRecord`` and ``BatchDeleteMemoryRecords``
(at most 100 per call), through the same Stubber:
botocore validates every request and answer against the real service model.
"""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from tests.helpers.agentcore_fake import FakeMemoryService, ServiceError

RECORD_OPERATIONS = ("RetrieveMemoryRecords", "ListMemoryRecords", "BatchDeleteMemoryRecords", "GetMemoryRecord",
                     "DeleteMemoryRecord")


class FakeRecordService(FakeMemoryService):
    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[str, Any]] = {}
        self._record_seq = itertools.count(1)

    def extract(self, namespace: str, text: str, strategy: str = "semanticFacts-a1B2c3D4e5",
                created_at: datetime | None = None) -> str:
        """A record as a strategy would write it, in ``namespace``; its id."""
        record_id = f"mem-{uuid.uuid4().hex}{next(self._record_seq):08d}"[:48]
        self.records[record_id] = {"memoryRecordId": record_id, "content": {"text": text},
                                   "memoryStrategyId": strategy, "namespaces": [namespace],
                                   "createdAt": created_at or datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)}
        return record_id

    def answer(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation not in RECORD_OPERATIONS:
            return super().answer(operation, params)
        with self._lock:
            self.calls.append((operation, params))
            if self._failures[operation]:
                raise self._failures[operation].popleft()
            if operation == "RetrieveMemoryRecords":
                return self._retrieve(params)
            if operation == "ListMemoryRecords":
                return self._list_records(params)
            if operation in ("GetMemoryRecord", "DeleteMemoryRecord"):
                record = self.records.get(params["memoryRecordId"])
                if record is None:
                    raise ServiceError("ResourceNotFoundException", 404, f"record {params['memoryRecordId']} not found")
                if operation == "GetMemoryRecord":
                    return {"memoryRecord": record}
                del self.records[params["memoryRecordId"]]
                return {"memoryRecordId": params["memoryRecordId"]}
            return self._batch_delete(params)

    def _in(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if "namespacePath" in params:
            return [r for r in self.records.values() if r["namespaces"][0].startswith(params["namespacePath"])]
        return [r for r in self.records.values() if r["namespaces"][0] == params.get("namespace")]

    def _retrieve(self, params: dict[str, Any]) -> dict[str, Any]:
        words = set(re.findall(r"\w+", params["searchCriteria"]["searchQuery"].lower()))
        scored = []
        for record in self._in(params):
            text = set(re.findall(r"\w+", record["content"]["text"].lower()))
            overlap = len(words & text) / max(len(words), 1)
            if overlap > 0:
                scored.append({**record, "score": round(overlap, 3)})
        scored.sort(key=lambda r: -r["score"])
        return {"memoryRecordSummaries": scored[: params["searchCriteria"].get("topK", 10)]}

    def _list_records(self, params: dict[str, Any]) -> dict[str, Any]:
        size = params.get("maxResults", 20)
        records = sorted(self._in(params), key=lambda r: r["memoryRecordId"])
        start = int(params["nextToken"]) if params.get("nextToken") else 0
        response: dict[str, Any] = {"memoryRecordSummaries": records[start:start + size]}
        if start + size < len(records):
            response["nextToken"] = str(start + size)
        return response

    def _batch_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        if len(params["records"]) > 100:
            raise self._invalid("records has more than 100 items")
        done, failed = [], []
        for item in params["records"]:
            record_id = item["memoryRecordId"]
            if self.records.pop(record_id, None) is not None:
                done.append({"memoryRecordId": record_id, "status": "SUCCEEDED"})
            else:
                failed.append({"memoryRecordId": record_id, "status": "FAILED", "errorCode": 404,
                               "errorMessage": "not found"})
        return {"successfulRecords": done, "failedRecords": failed}
