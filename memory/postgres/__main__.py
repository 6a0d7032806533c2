"""``python -m memory.postgres migrate`` (``make db-schema``): apply the schema from ``DATABASE_URL`` now;
``python -m memory.postgres sql``: print it instead, for teams that apply schemas with their own tools."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.errors import ConfigError
from memory.postgres.connection import parse_database_url, redact
from memory.postgres.schema import MIGRATIONS, migrate, schema_script


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory.postgres", description=__doc__)
    parser.add_argument("command", choices=["migrate", "sql"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "sql":
        for component in MIGRATIONS:
            print(schema_script(component))
        return 0
    url = os.environ.get("DATABASE_URL", "")
    try:
        parse_database_url(url)
    except ConfigError as e:
        print(e.message, file=sys.stderr)
        return 2
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for component in MIGRATIONS:
                applied = migrate(conn, component)
                print(f"{component}: {applied} migration(s) applied on {redact(url)}")
    except psycopg.Error as e:
        print(f"DATABASE_URL={redact(url)!r}: {type(e).__name__}: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
