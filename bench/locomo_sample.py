"""A tiny conversation set in LoCoMo's format, written for ``bench/ltm_recall.py --quick``.

LoCoMo itself lives outside the repository (and CI does not have it); this sample is made up here, small
enough to run in seconds, so the quick run exercises the whole benchmark: loading, the product's write and
search, the BM25 baseline, leave-one-out tuning, calibration and the scale figures. Its recall means nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: (speaker, text) per session; speaker A plays the user
_CHATS: dict[str, tuple[tuple[str, str], list[list[tuple[str, str]]]]] = {
    "sample-ana": (("Ana", "Sam"), [
        [("Ana", "I'm planning a trip to Oslo in May with my brother Tom."),
         ("Sam", "Nice! What do you both like doing?"),
         ("Ana", "Tom loves museums and I prefer hiking outdoors."),
         ("Sam", "The Viking Ship Museum and the Nordmarka trails would suit you both."),
         ("Ana", "We are both vegetarian, so food could be tricky."),
         ("Sam", "Oslo has plenty of vegetarian restaurants near Grunerlokka.")],
        [("Ana", "My locker code at the gym is 9911, by the way."),
         ("Sam", "Noted. How was the Oslo trip?"),
         ("Ana", "Great. Tom spent two days in the Munch Museum."),
         ("Sam", "And did you get your hike?"),
         ("Ana", "Yes, we walked around Sognsvann lake on the last day."),
         ("Sam", "Sounds like a good balance.")],
    ]),
    "sample-ben": (("Ben", "Kim"), [
        [("Ben", "I adopted a grey cat called Pixel last week."),
         ("Kim", "Congratulations! How is Pixel settling in?"),
         ("Ben", "She hides under the sofa but loves salmon treats."),
         ("Kim", "Give her time, cats need a few weeks."),
         ("Ben", "I also started learning the cello in the evenings."),
         ("Kim", "That is ambitious, who teaches you?")],
        [("Ben", "My cello teacher is called Mrs Ortega, she is very patient."),
         ("Kim", "How is Pixel now?"),
         ("Ben", "Pixel sleeps on my bed every night now."),
         ("Kim", "So she trusts you."),
         ("Ben", "I moved to a new flat in Leeds in June."),
         ("Kim", "Does Pixel like the new flat?")],
    ]),
}
_DATES = ("1:56 pm on 8 May, 2023", "10:04 am on 20 June, 2023")
#: (question, evidence dia ids, LoCoMo category: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop)
_QUESTIONS: dict[str, list[tuple[str, list[str], int]]] = {
    "sample-ana": [("Where did Ana plan to travel with her brother?", ["D1:1"], 4),
                   ("What is Ana's locker code?", ["D2:1"], 4),
                   ("Which museum did Tom visit and what did Ana do on the last day?", ["D2:3", "D2:5"], 1),
                   ("When did Ana talk about her trip plans?", ["D1:1"], 2),
                   ("What kind of food do Ana and Tom eat?", ["D1:5"], 3)],
    "sample-ben": [("What is the name of Ben's cat?", ["D1:1"], 4),
                   ("Who teaches Ben the cello?", ["D2:1"], 4),
                   ("What does Pixel like to eat and where does she sleep?", ["D1:3", "D2:3"], 1),
                   ("When did Ben move to Leeds?", ["D2:5"], 2),
                   ("What instrument is Ben learning?", ["D1:5"], 3)],
}


def sample() -> list[dict[str, Any]]:
    """The conversations, as LoCoMo's JSON holds them."""
    out = []
    for sample_id, ((speaker_a, speaker_b), sessions) in _CHATS.items():
        conversation: dict[str, Any] = {"speaker_a": speaker_a, "speaker_b": speaker_b}
        for n, turns in enumerate(sessions, start=1):
            conversation[f"session_{n}_date_time"] = _DATES[n - 1]
            conversation[f"session_{n}"] = [{"speaker": speaker, "dia_id": f"D{n}:{i}", "text": text}
                                            for i, (speaker, text) in enumerate(turns, start=1)]
        qa = [{"question": q, "evidence": evidence, "category": category}
              for q, evidence, category in _QUESTIONS[sample_id]]
        out.append({"sample_id": sample_id, "conversation": conversation, "qa": qa})
    return out


def write_sample(directory: Path) -> Path:
    """The sample as a LoCoMo-format JSON file in ``directory``."""
    path = directory / "locomo-sample.json"
    path.write_text(json.dumps(sample(), indent=1))
    return path
