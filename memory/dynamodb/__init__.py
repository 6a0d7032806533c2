"""DynamoDB store: one table, shared by every replica, conditional writes, one ``Query`` per window read.

Item layout (``pk`` and ``sk`` are strings; ``<a>``/``<s>`` are the actor and session ids)::

    pk = "<len a>:<a>:<len s>:<s>"                      every item of one session (length-prefixed ids,
                                                         so no two (actor, session) pairs share a pk)
    sk = "turn#meta"                                     the session's head: counters, generation, summary,
                                                         expiry, first message, listing keys
    sk = "turn#<epoch:13>#<turn:12>#<event:12>#<part:3>" one fragment: the messages one add_turns call
                                                         stored for one turn (JSON, split in parts of at
                                                         most 350 KB so no item nears DynamoDB's 400 KB)
    sk = "idem#<sha-256 of the key>"                     an idempotency record: the count of the turn stored
                                                         under that key and where its fragments are

``turn#meta`` sorts after every fragment, so ``Query(begins_with(sk, "turn#"),
ScanIndexForward=False, Limit=k+1)`` returns the head and then the k newest
turns: ``load_window`` is one ``Query`` whose cost depends on k, never on the
session's length, and the head it starts with carries the generation and the
count. The head holds ``epoch`` (when this life of the session began, in ms),
``generation``, ``turns``, ``users``, ``events``, the rolling summary,
``first_message``, ``updated_at`` (the last turn written) and, while the session
holds turns, ``actor_key``: the ``sessions_by_actor`` index (``actor_key`` +
``updated_at``) lists an actor's sessions newest first without a Scan. With
``SESSION_TTL``, ``live_until`` is the end of the session's life (checked at read
time) and ``expires_at`` DynamoDB's TTL attribute (when an item may be reclaimed).

- ``add_turns`` is one ``TransactWriteItems``: the head is updated on the
  condition that ``epoch`` and ``events`` are still what the writer read, and
  the fragments (and, with an idempotency key, the record, on the condition that
  no live record of this life holds the key) are put with it. A writer that lost
  the race gets the current head back (``ReturnValuesOnConditionCheckFailure``)
  and tries again (after a jittered pause from the second loss on, for up to
  10 s: ``writes.write_attempts``), so concurrent writers (threads, processes, replicas) get
  distinct, gap-free counts and a turn is stored whole or not at all. The head
  seen by the last read (or write) of the session in this process is
  remembered, so a plain turn costs two calls: the ``Query`` and the transaction.
- **Generations.** ``delete_session`` turns the head into a tombstone in one
  ``UpdateItem``: ``generation + 1``, a new epoch, no counters, no summary, no
  ``actor_key`` (unlisted), reclaimed ``max(SESSION_TTL, 7 days)`` later. Every
  delete starts a new epoch, so a writer's exact-head condition also pins the
  generation: a turn loaded before the clear is refused (``SessionChanged``).
  The old items are deleted after the tombstone; until then they are of an
  older epoch, which no read returns.
- **Idempotency.** A record is valid while it is within its retention
  (``SESSION_TTL``, else 24 h; ``expires_at``, also checked at read time) and of
  the head's current epoch: a clear or an expiry invalidates every record at
  once, before (or without) their deletion. ``find_request`` reads the head and
  the record in one ``BatchGetItem``.
- A session that expired starts a new epoch when written again; fragments of
  an older epoch are never read (they sort below the current ones and are
  reclaimed by TTL or ``delete_session``).
- Fragments get ``expires_at`` = write time + 2 x ``SESSION_TTL``; the head
  records the earliest (``items_expire_at``). When the session's life slides
  past it, every fragment is re-stamped (at most once per TTL of activity), so
  DynamoDB never deletes a turn of a live session.
- ``SESSION_TTL`` counts from the last activity: a write, or a turn's
  ``load_window``. To keep a plain turn at two calls, ``load_window`` writes the
  new ``live_until`` (one ``UpdateItem``) only once less than half of the TTL is
  left; a turn that stores within ``SESSION_TTL`` of its own ``load_window``
  finds its session alive either way (the process remembers when it loaded it,
  and the write's exact-head condition proves nothing happened since).

Modules: ``keys`` (pk / sk and item limits), ``items`` (the head, records and fragments as stored, the
attribute codec), ``table`` (client, ``create_table``, the start-up schema check), ``session_io`` (the
heads this process remembers, item reads, fragment re-stamping), ``writes`` (``add_turns``,
``delete_session``, ``put_summary``), ``store`` (``DynamoDBStore``: the reads), ``cli``
(``python -m memory.dynamodb create-table``).
"""

from memory.dynamodb.items import Head, split_body
from memory.dynamodb.keys import (
    ACTOR_INDEX, DEFAULT_TABLE, META_SK, PART_BYTES, TTL_ATTRIBUTE, FragmentKey, actor_key, request_sk, session_pk,
)
from memory.dynamodb.store import DynamoDBStore
from memory.dynamodb.table import check_table, create_table, make_client, schema_problems

__all__ = [
    "ACTOR_INDEX", "DEFAULT_TABLE", "META_SK", "PART_BYTES", "TTL_ATTRIBUTE", "DynamoDBStore", "FragmentKey", "Head",
    "actor_key", "check_table", "create_table", "make_client", "request_sk", "schema_problems", "session_pk",
    "split_body",
]
