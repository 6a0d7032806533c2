"""``python -m memory.dynamodb create-table`` (see ``memory.dynamodb.cli``)."""

from memory.dynamodb.cli import main

raise SystemExit(main())
