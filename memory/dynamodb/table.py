"""The table itself: the client, creating it, and the start-up check that it has the store's schema."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import ConfigError
from memory.dynamodb.items import _code, _describe
from memory.dynamodb.keys import ACTOR_INDEX, CONNECT_TIMEOUT, INDEX_ATTRIBUTES, READ_TIMEOUT, TTL_ATTRIBUTE

logger = logging.getLogger(__name__)


def make_client(region_name: str, endpoint_url: str | None = None) -> Any:
    """A DynamoDB client with bounded timeouts and botocore's standard retries (throttling backed off)."""
    return boto3.Session(region_name=region_name).client(
        "dynamodb", endpoint_url=endpoint_url,
        config=Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                      retries={"mode": "standard", "max_attempts": 3}),
    )


def create_table(client: Any, table: str) -> None:
    """Create the table the store expects (on-demand capacity), with its actor index and TTL on ``expires_at``."""
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "actor_key", "AttributeType": "S"},
                              {"AttributeName": "updated_at", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": ACTOR_INDEX,
            "KeySchema": [{"AttributeName": "actor_key", "KeyType": "HASH"},
                          {"AttributeName": "updated_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE",
                           "NonKeyAttributes": list(INDEX_ATTRIBUTES)},
        }],
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def schema_problems(description: dict[str, Any]) -> list[str]:
    """What is wrong with a ``DescribeTable`` answer for this store (empty: the table fits)."""
    problems = []
    keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])}
    if keys != {"pk": "HASH", "sk": "RANGE"} or types.get("pk") != "S" or types.get("sk") != "S":
        problems.append(f"key schema is {keys} ({types}), not pk (S, HASH) + sk (S, RANGE)")
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(ACTOR_INDEX)
    if index is None:
        problems.append(f"global secondary index {ACTOR_INDEX!r} is missing")
    elif {k["AttributeName"]: k["KeyType"] for k in index["KeySchema"]} != {"actor_key": "HASH",
                                                                            "updated_at": "RANGE"}:
        problems.append(f"index {ACTOR_INDEX!r} is not actor_key (HASH) + updated_at (RANGE)")
    else:
        projection = index.get("Projection", {})
        missing = [] if projection.get("ProjectionType") == "ALL" else \
            sorted(set(INDEX_ATTRIBUTES) - set(projection.get("NonKeyAttributes", [])))
        if missing:
            problems.append(f"index {ACTOR_INDEX!r} does not project {', '.join(missing)}")
    return problems


def check_table(client: Any, table: str, ttl: int | None, *, create: bool = False) -> None:
    """Start-up: the table exists (or is created) and has the store's schema; else ``ConfigError``, one line."""
    name = f"DYNAMODB_TABLE={table!r}"
    try:
        try:
            description = client.describe_table(TableName=table)["Table"]
        except ClientError as e:
            if _code(e) != "ResourceNotFoundException":
                raise
            if not create:
                raise ConfigError(f"{name} does not exist (create it with `python -m memory.dynamodb "
                                  f"create-table` or DYNAMODB_CREATE_TABLE=on)") from e
            logger.info("table=<%s> | creating the session table", table)
            create_table(client, table)
            description = client.describe_table(TableName=table)["Table"]
        problems = schema_problems(description)
        if problems:
            raise ConfigError(f"{name} does not have the session store's schema: {'; '.join(problems)}")
        answer = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        enabled = answer.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and \
            answer.get("AttributeName") == TTL_ATTRIBUTE
        if not enabled and ttl is not None:
            raise ConfigError(f"{name}: SESSION_TTL is set but the table's TTL is not enabled on "
                              f"{TTL_ATTRIBUTE!r} ({answer.get('TimeToLiveStatus', 'DISABLED')})")
        if not enabled:
            logger.warning("table=<%s> | TTL is not enabled on %r: idempotency records and the tombstones of "
                           "cleared sessions are ignored once past their time but never reclaimed",
                           table, TTL_ATTRIBUTE)
    except (ClientError, BotoCoreError) as e:
        raise ConfigError(f"{name} cannot be checked: {_describe(e)}") from e
