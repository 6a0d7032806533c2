"""The reference long-term recall is measured against: plain BM25 over a record's text, query terms OR-ed.

Kept in ``bench/``: the product never searches this way (``LocalLongTermMemory.search`` fuses keyword and
vector scores); ``bench/ltm_recall.py`` prints it beside the product's figures so a change shows what it
gains over the simplest search.
"""

from __future__ import annotations

from longterm.local import LocalLongTermMemory
from longterm.text import fts_match, query_terms

#: BM25 weights of the keyword index's columns: the text column only
TEXT_ONLY = (1.0, 0, 0, 0, 0)


def keyword_baseline(ltm: LocalLongTermMemory, actor_id: str, query: str, top_k: int) -> list[int]:
    """Record ids of plain BM25 over the text column, query terms OR-ed (the benchmark's reference)."""
    hits = ltm.store.keyword_search(actor_id, fts_match(query_terms(query)), top_k, TEXT_ONLY)
    return [rowid for rowid, _ in hits]
