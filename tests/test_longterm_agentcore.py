"""Long-term memory on AgentCore: the service's records through bedrock-agentcore's AgentCoreMemoryStore.

Every call goes through ``botocore.stub.Stubber`` (``tests.helpers.agentcore_records_fake``): botocore validates
each request against the real ``bedrock-agentcore`` service model, the Stubber each answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

import longterm
from core.errors import InvalidCursor, LongTermUnavailable
from core.settings import Settings
from longterm.agentcore import AgentCoreLongTermMemory
from tests.helpers.agentcore_fake import MEMORY_ID
from tests.helpers.agentcore_records_fake import FakeRecordService
from tests.conftest import boto3_session


@pytest.fixture
def service() -> FakeRecordService:
    return FakeRecordService()


@pytest.fixture
def ltm(service: FakeRecordService) -> Iterator[AgentCoreLongTermMemory]:
    memory = AgentCoreLongTermMemory(MEMORY_ID, "/users/{actorId}/", "us-west-2", boto3_session=boto3_session())
    service.attach(memory.client.gmdp_client)
    yield memory
    memory.close()


def test_search_reads_the_actors_namespace_subtree_only(ltm: AgentCoreLongTermMemory,
                                                        service: FakeRecordService) -> None:
    service.extract("/users/alice/facts/", "The user is allergic to peanuts")
    service.extract("/users/alice/preferences/", "The user prefers window seats")
    service.extract("/users/alice2/facts/", "alice2 is allergic to peanuts too")
    service.extract("/users/bob/facts/", "Bob is allergic to peanuts")
    found = ltm.search("alice", "is the user allergic to peanuts", 5)
    assert found[0].text == "The user is allergic to peanuts"
    assert {m.text for m in found} <= {"The user is allergic to peanuts", "The user prefers window seats"}
    assert found[0].role == "fact" and found[0].record_id.startswith("mem-") and 0 < found[0].score <= 1
    assert found[0].created_at == pytest.approx(1_795_167_000.0, abs=86_400 * 400)
    [(operation, request)] = service.calls
    assert operation == "RetrieveMemoryRecords"
    assert request["namespacePath"] == "/users/alice/"
    assert request["searchCriteria"] == {"searchQuery": "is the user allergic to peanuts", "topK": 5}
    assert ltm.search("bob", "window seats", 5) == []


def test_record_exchange_calls_nothing(ltm: AgentCoreLongTermMemory, service: FakeRecordService) -> None:
    ltm.record_exchange("alice", "s1", 1, "hi", "hello", 0.0, 0)
    assert service.calls == []


def test_forget_deletes_every_page_of_the_actors_records(ltm: AgentCoreLongTermMemory,
                                                         service: FakeRecordService) -> None:
    for n in range(130):
        service.extract("/users/alice/facts/", f"fact number {n}")
    service.extract("/summaries/alice/s1/", "Session s1: the user planned a trip")
    bobs = service.extract("/users/bob/facts/", "Bob likes tea")
    assert ltm.forget("alice") == 131
    assert list(service.records) == [bobs]
    deletes = [r for op, r in service.calls if op == "BatchDeleteMemoryRecords"]
    assert [len(r["records"]) for r in deletes] == [100, 31]
    assert ltm.search("alice", "fact number", 10) == []


def test_clearing_a_session_deletes_its_summary_records(ltm: AgentCoreLongTermMemory,
                                                        service: FakeRecordService) -> None:
    service.extract("/summaries/alice/s1/", "Session s1 summary")
    kept = {service.extract("/summaries/alice/s10/", "Session s10 summary"),
            service.extract("/users/alice/facts/", "A fact from some session")}
    assert ltm.delete_session("alice", "s1", generation=0) == 1
    assert set(service.records) == kept


def test_a_service_failure_is_a_503(ltm: AgentCoreLongTermMemory, service: FakeRecordService) -> None:
    service.fail("RetrieveMemoryRecords", "ThrottlingException", 429, times=5)
    with pytest.raises(LongTermUnavailable) as error:
        ltm.search("alice", "anything", 3)
    assert error.value.status == 503 and "ThrottlingException" in error.value.message
    service.fail("ListMemoryRecords", "ServiceQuotaExceededException", 402, times=5)
    with pytest.raises(LongTermUnavailable):
        ltm.forget("alice")


def test_the_agentcore_backend_uses_the_services_records(caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(Settings.from_env({}), memory_backend="agentcore", memory_id=MEMORY_ID)
    with caplog.at_level("INFO", logger="longterm"):
        memory = longterm.create_long_term(settings, "agentcore")
    assert isinstance(memory, AgentCoreLongTermMemory)
    assert memory.namespace == "/users/{actorId}/"
    assert any("long-term memory: on | backend=<agentcore>" in r.getMessage() for r in caplog.records)
    memory.close()


def test_delete_record_deletes_one_record_of_the_callers_actor_only(ltm: AgentCoreLongTermMemory,
                                                                   service: FakeRecordService) -> None:
    wrong = service.extract("/users/alice/facts/", "The user lives in Lisbon")
    kept = service.extract("/users/alice/facts/", "The user likes tea")
    bobs = service.extract("/users/bob/facts/", "Bob lives in Porto")
    summary = service.extract("/summaries/alice/s1/", "Session s1: the user talked about Lisbon")
    assert ltm.delete_record("bob", wrong) is False  # another actor's record: as if unknown, nothing deleted
    assert ltm.delete_record("alice", bobs) is False
    assert ltm.delete_record("alice", "mem-" + "0" * 40) is False  # unknown to the service
    assert ltm.delete_record("alice", "1; DROP") is False  # not a record id at all: no call
    assert ltm.delete_record("alice", wrong) is True
    assert ltm.delete_record("alice", summary) is True
    assert ltm.delete_record("alice", wrong) is False
    assert set(service.records) == {kept, bobs}
    assert "DeleteMemoryRecord" not in [op for op, r in service.calls if r.get("memoryRecordId") in (bobs,)]


def test_list_records_lists_the_actors_records_newest_first_in_pages(ltm: AgentCoreLongTermMemory,
                                                                    service: FakeRecordService) -> None:
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for day in range(130):
        service.extract("/users/alice/facts/", f"fact of day {day}", created_at=start + timedelta(days=day))
    service.extract("/summaries/alice/s1/", "Session s1 summary", created_at=start + timedelta(days=200))
    service.extract("/users/bob/facts/", "Bob likes tea", created_at=start + timedelta(days=300))
    first = ltm.list_records("alice", limit=100)
    assert [m.text for m in first.records[:3]] == ["Session s1 summary", "fact of day 129", "fact of day 128"]
    assert first.next_cursor is not None
    second = ltm.list_records("alice", limit=100, cursor=first.next_cursor)
    assert [m.text for m in second.records][-1] == "fact of day 0" and second.next_cursor is None
    assert len(first.records) + len(second.records) == 131
    with pytest.raises(InvalidCursor):
        ltm.list_records("alice", cursor="a" + "9" * 400)
