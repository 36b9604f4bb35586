"""Prune a transformers encoder's vocabulary to the pieces real medical text uses.

The XLM-R vocabulary of multilingual-e5-small has 250,002 pieces: 96M of its 118M parameters are the word-embedding
matrix. The pieces that occur in a large tokenised sample of every language of the shared data (plus the special
tokens) are kept, in their original order, so special ids 0..3 (<s>, <pad>, </s>, <unk>) stay where XLM-R's
position-id logic expects them. For a Unigram tokenizer, removing pieces that the best segmentation of a text does
not use cannot change that segmentation, so covered text tokenises identically (checked by `check_identical`).

    python -m tools.build.vocab prune --model DIR --out DIR [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer

from edge.files import staged_dir
from tools.data.records import DEFAULT_DATA_DIR


def collect_ids(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 2048) -> set[int]:
    used: set[int] = set()
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) >= batch:
            for enc in tokenizer.encode_batch(chunk):
                used.update(enc.ids)
            chunk = []
    for enc in tokenizer.encode_batch(chunk):
        used.update(enc.ids)
    return used


def pruned_tokenizer_json(tok: dict, keep: Sequence[int]) -> dict:
    """tokenizer.json (Unigram) restricted to `keep` (sorted old ids); every id inside it is remapped."""
    if tok["model"]["type"] != "Unigram":
        raise ValueError(f"only Unigram tokenizers are supported, got {tok['model']['type']}")
    remap = {old: new for new, old in enumerate(keep)}
    out = json.loads(json.dumps(tok))
    out["model"]["vocab"] = [tok["model"]["vocab"][old] for old in keep]
    out["model"]["unk_id"] = remap[tok["model"]["unk_id"]]
    out["added_tokens"] = [dict(t, id=remap[t["id"]]) for t in tok.get("added_tokens", []) if t["id"] in remap]
    post = out.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [remap[i] for i in special["ids"]]
    for key in ("sep", "cls"):
        if key in post:
            post[key] = [post[key][0], remap[post[key][1]]]
    return out


def check_identical(old: Tokenizer, new: Tokenizer, keep: Sequence[int], texts: Sequence[str]) -> int:
    """Number of texts whose pruned tokenisation differs from the original (mapped back to old ids)."""
    keep_arr = np.asarray(keep)
    mismatches = 0
    for a, b in zip(old.encode_batch(list(texts)), new.encode_batch(list(texts))):
        if list(keep_arr[b.ids]) != a.ids:
            mismatches += 1
    return mismatches


def prune_model_dir(model_dir: Path, out_dir: Path, texts: Sequence[str], extra_ids: Iterable[int] = ()) -> dict:
    """Write a copy of the HF folder `model_dir` with the vocabulary pruned to what `texts` use."""
    from safetensors.numpy import load_file, save_file

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    specials = {t["id"] for t in tok_json.get("added_tokens", [])}
    keep = sorted(collect_ids(tokenizer, texts) | specials | set(extra_ids))
    pruned_json = pruned_tokenizer_json(tok_json, keep)

    weights = load_file(str(model_dir / "model.safetensors"))
    (emb_key,) = [k for k in weights if k.endswith("word_embeddings.weight")]
    weights[emb_key] = np.ascontiguousarray(weights[emb_key][keep])
    config = json.loads((model_dir / "config.json").read_text())
    old_vocab = config["vocab_size"]
    config["vocab_size"] = len(keep)

    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a fresh cache has no runs/ folder yet
    with staged_dir(out_dir) as staging:
        save_file(weights, str(staging / "model.safetensors"))
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (staging / "tokenizer.json").write_text(json.dumps(pruned_json, ensure_ascii=False), encoding="utf-8")
        for extra in model_dir.iterdir():
            if extra.name not in {"model.safetensors", "config.json", "tokenizer.json"} and extra.is_file():
                shutil.copy(extra, staging / extra.name)
        new_tok = Tokenizer.from_file(str(staging / "tokenizer.json"))
        sample = list(texts[:: max(1, len(texts) // 20000)])
        mismatches = check_identical(tokenizer, new_tok, keep, sample)
        if mismatches:
            raise RuntimeError(f"pruned tokenizer differs from the original on {mismatches} of {len(sample)} texts")
        report = {"vocab_before": old_vocab, "vocab_after": len(keep), "texts": len(texts),
                  "checked_identical_on": len(sample)}
        (staging / "vocab_pruning.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def vocabulary_texts(data_dir: Path) -> list[str]:
    """Every text of every language in the shared data that a query or document can hold: documents, queries,
    question pairs, and every ICD-10 name and alias. Evaluation texts are included on purpose: keeping a piece in
    the vocabulary leaks no label, and a user's query must tokenise the same whether or not it was held out."""
    from tools.data.chip import chip_pairs
    from tools.data.cmedir import cmedir_judgements
    from tools.data.icd10 import icd_entries
    from tools.data.kuake import kuake_pairs
    from tools.data.liveqa import liveqa_answers, liveqa_questions
    from tools.data.medquad import medquad_rows
    from tools.data.registry import CORPORA, load_corpus
    from tools.data.toyhom import toyhom_rows

    texts: list[str] = []
    for name in CORPORA:
        texts += [d.text for d in load_corpus(name, data_dir)]
    for split in ("dev", "test"):
        texts += list(cmedir_judgements(split, data_dir))
    texts += [r.question for r in toyhom_rows(data_dir)]
    for pairs in (chip_pairs(data_dir), kuake_pairs("train", data_dir),
                  kuake_pairs("dev", data_dir)):
        texts += [p.text1 for p in pairs] + [p.text2 for p in pairs]
    texts += [r.question for r in medquad_rows(data_dir)]
    texts += [q.text for q in liveqa_questions(data_dir)]
    texts += list(liveqa_answers(data_dir).values())
    for entry in icd_entries(data_dir):
        texts += list(entry.names.values())
        texts += [alias for aliases in entry.aliases.values() for alias in aliases]
    return [t for t in dict.fromkeys(texts) if t]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build.vocab")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prune", help="prune an HF encoder folder's vocabulary to the shared data's pieces")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    texts = vocabulary_texts(args.data_dir)
    report = prune_model_dir(args.model, args.out, texts)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
