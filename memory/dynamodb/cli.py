"""``python -m memory.dynamodb create-table``: create (or check) the table from the environment's settings."""

from __future__ import annotations

import argparse

from core.errors import ConfigError
from memory.dynamodb.keys import ACTOR_INDEX, TTL_ATTRIBUTE
from memory.dynamodb.store import DynamoDBStore
from memory.dynamodb.table import make_client


def main(argv: list[str] | None = None) -> int:
    """``python -m memory.dynamodb create-table``: create (or check) the table from the environment's settings."""
    from core.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m memory.dynamodb", description=main.__doc__)
    parser.add_argument("command", choices=["create-table", "check-table"])
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        store = DynamoDBStore(make_client(settings.aws_region, settings.dynamodb_endpoint_url),
                              settings.dynamodb_table, ttl=settings.session_ttl)
        store.check_table(create=args.command == "create-table")
    except ConfigError as e:
        print(f"configuration error: {e.message}")
        return 2
    print(f"table {settings.dynamodb_table!r} is ready: pk + sk, index {ACTOR_INDEX!r}, TTL on {TTL_ATTRIBUTE!r}")
    return 0
