"""Each backend is described once: its name appears only in its own modules and its registry entry.

``memory.registry`` and ``longterm.registry`` are what every other module asks about a backend (how to
build it, describe it, probe it, which long-term memory it gets). A name compared anywhere else is a second
description that the next backend would have to be added to, and that goes stale (as the DynamoDB start-up
line once said "in this process").
"""

from __future__ import annotations

import ast
from pathlib import Path

from longterm.registry import LONG_TERM_BACKENDS, OFF
from memory.registry import SESSION_BACKENDS

ROOT = Path(__file__).resolve().parent.parent
#: the product's packages and modules (tests, bench and the dev UI aside)
PRODUCT = ("memory", "longterm", "core", "service", "hooks", "tools", "models", "agent.py")
REGISTRIES = ("memory/registry.py", "longterm/registry.py")
#: modules of a backend whose file name does not carry the backend's name: the local long-term memory (the
#: ``sqlite`` entry's) names itself after where its records are, a SQLite file or this process
OWN_MODULES = {"longterm/local.py": {"sqlite", "memory"}}


def backend_names() -> set[str]:
    return (set(SESSION_BACKENDS) | set(LONG_TERM_BACKENDS)) - {OFF}  # "off" is a switch's word, not a backend


def product_files() -> list[Path]:
    files: list[Path] = []
    for entry in PRODUCT:
        path = ROOT / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def is_its_own(relative: str, name: str) -> bool:
    """``memory/redis_store.py`` is redis's, ``memory/dynamodb/items.py`` dynamodb's, ``longterm/agentcore.py``
    agentcore's: the path below the package carries the name."""
    below_package = relative.split("/", 1)[-1]
    return name in below_package or name in OWN_MODULES.get(relative, set())


def names_outside_their_modules(source: str, relative: str, names: set[str]) -> list[str]:
    """``"redis"`` as a value (a comparison, an argument, a default), not as a key (``body["memory"]``)."""
    tree = ast.parse(source)
    keys = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    keys |= {id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys if key}
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in names
             and id(node) not in keys and not is_its_own(relative, node.value)]
    return [f"{relative}:{node.lineno}: {node.value!r}" for node in sorted(found, key=lambda n: (n.lineno, n.col_offset))]


def test_backend_names_appear_only_in_their_modules_and_registry_entries() -> None:
    names = backend_names()
    found = []
    for path in product_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative not in REGISTRIES:
            found += names_outside_their_modules(path.read_text(encoding="utf-8"), relative, names)
    assert found == []


def test_the_scan_finds_a_name_compared_outside_the_registry() -> None:
    """The check above would see the comparisons the registry replaced."""
    source = 'if settings.memory_backend not in ("memory", "sqlite"):\n    pass\nif store.name != "redis":\n    pass\n'
    assert names_outside_their_modules(source, "service/assistant.py", backend_names()) == [
        "service/assistant.py:1: 'memory'", "service/assistant.py:1: 'sqlite'", "service/assistant.py:3: 'redis'"]
    assert names_outside_their_modules('body["memory"] = {"memory": 1}\n', "service/views.py", backend_names()) == []


def test_every_setting_a_backend_reads_is_documented() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    read = {v for e in SESSION_BACKENDS.values() for v in e.settings}
    read |= {v for e in LONG_TERM_BACKENDS.values() for v in e.settings}
    assert sorted(v for v in read if f"`{v}`" not in documented) == []
    assert all(f"`{name}`" in documented for name in backend_names())
