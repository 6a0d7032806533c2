"""docs/guarantees.md names, for each promise, the tests that prove it: every name it gives must exist.

A row whose test was renamed or removed says more than the suite proves; this keeps the table honest.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: ``tests/test_x.py::test_name`` (a file and a test) or ``::test_name`` (another test of the last file named)
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::([\w]+)(?:\[[^\]`]*\])?)?`")


@cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    names = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return frozenset(name for name in names if name.startswith("test_"))


def references(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        current: str | None = None
        for path, name in REFERENCE.findall(line):
            current = path or current
            if current is not None and (path or name):
                found.append((current, name or None))
    return found


def test_every_test_the_guarantees_table_names_exists() -> None:
    named = references((ROOT / "docs" / "guarantees.md").read_text())
    assert len(named) > 100, "the table names its tests"
    missing = [f"{path}::{name}" if name else path for path, name in named
               if not (ROOT / path).is_file() or (name is not None and name not in defined_tests(path))]
    assert missing == []
