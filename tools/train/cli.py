"""Train the query encoder (student) into the LLM document encoder's vector space: CARE's two stages.

    python -m tools.train stage1 --student E5_DIR --out runs/s1 [--dims 256] [--layers 12|6] [--steps N|--epochs E]
    python -m tools.train stage2 --student runs/s1 --out runs/s2 [--steps N|--epochs E]
    python -m tools.train all --student E5_DIR --out runs/r1 [--dims 256] [--layers 6] \
        [--stage1-epochs 1] [--stage2-epochs 1]          # stage1 -> stage2, each skipped once complete
    python -m tools.train teacher stage1|stage2 [--shard i/N]   # only compute the teacher vectors a stage needs
    python -m tools.train bench --student E5_DIR [--layers 6] [--steps 6]   # seconds per stage-I step, no teacher
    python -m tools.train alignment --encoder-dir DIR [--tasks cmedir-retrieval,...]  # held-out cosine to the LLM

Stage I (alignment): unlabeled, mostly query-like texts (``tools.train.data.stage1_data``). Target = the LLM's
vector of the same text under its *query* prompt. Loss = ``mse_weight * |s - t|^2 + nce_weight * InfoNCE`` of the
student vectors against the batch's teacher vectors (temperature 0.05). The head (hidden -> dims) starts as a ridge
fit from the frozen mean-pooled student vectors to the teacher vectors on ``--ridge-sample`` texts (kept instead
when the student already has a head of the right dims).

Stage II (retrieval): (query, positive document) pairs (``tools.train.data.stage2_data``). Each query gets 7 hard
negatives mined once, before training, from the frozen *document* vectors with the stage-I student (ranks 4-40
minus known positives, ``tools.train.negatives``). Loss = InfoNCE at T=0.02 against the frozen document vectors of the
batch (every pair's positive + negatives; other queries' candidates that are positives of this query are masked)
+ ``kl_weight`` * KL(LLM query->candidate score distribution || student's) + ``align_weight`` * ``|s - t_q|^2``
to the LLM's query vector (keeps the student from drifting off the space the KL and MSE anchor). With
``--kl-co-teacher DIR`` the KL target is the fusion ``(1 - w) * cos_llm + w * cos_e5`` of the LLM's cosines and a
symmetric encoder's own (``tools.train.co_teacher``, ``w`` = ``--kl-co-weight``); the student still scores against the
LLM's document vectors.

Both stages: the student is ``tools.train.student.PooledEncoder`` (XLM-R backbone, optional first-N layers,
mean pool, head, L2 norm) with the word-embedding matrix frozen; AdamW (lr 5e-5, weight decay 0.01), linear
warm-up over 5% of the steps then linear decay, gradient clipping at 1.0, batch 64, 32 tokens in stage I and 64 in
stage II, the e5 ``"query: "`` prompt. Teacher vectors come from the vector cache shared with
``tools.build.index`` (``--cache-dir``); missing ones are computed (``--teacher-missing embed``) or refused
(``error``). Every training text goes through ``tools.data.splits.assert_not_eval``; splits come only from
``tools.data.splits``.

A run folder (``--out``) holds ``checkpoint.pt`` (written every ``--checkpoint-every`` steps, atomically: student,
optimizer, scheduler, step, RNG states), ``train_log.jsonl``, ``loss_curve.png``, ``run.json`` (arguments, data
counts, wall time per phase, status) and, once done, ``model/``: the student folder (model.safetensors,
config.json, tokenizer.json, projection.safetensors) that ``python -m tools.export --student RUN`` turns into the
runtime's INT8 folder. ``--resume`` continues from the checkpoint (same arguments required); SIGINT / SIGTERM stop
after the current step with a checkpoint. ``--detach`` starts the same command in the background (new session,
output in ``OUT/train.out``, pid in ``OUT/train.pid``) and returns at once.

``--sources`` restricts a stage to some of its data sources, ``--max-per-source`` caps each (20,000 by default, so
ICD-10's 78k multilingual names do not swamp the rest); ``--source-caps cmedir=0,icd=8000`` overrides it per source
(0 = every item). ``--threads`` sets torch's and llama.cpp's threads; on a
machine whose cores other jobs already keep busy, ``--threads 1`` is much faster than oversubscribing them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import edge._native  # noqa: F401  (onnxruntime must load before anything that pulls usearch)
from edge.errors import BadInput
from tools.data.records import DEFAULT_DATA_DIR
from tools.data.splits import EvalLeakError
from tools.train import data as train_data, state as train_state
from tools.train.alignment import alignment_cosine
from tools.train.bench import bench_steps
from tools.train.config import Stage1Config, Stage2Config
from tools.train.loop import Stopped
from tools.train.precompute import precompute_teacher
from tools.train.runs import command_line
from tools.train.stage1 import train_stage1
from tools.train.stage2 import train_stage2

REPO = Path(__file__).resolve().parents[2]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _cap(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (no cap) or a positive integer, got {text}")
    return value or None


def _source_caps(text: str) -> tuple[tuple[str, int | None], ...]:
    caps = []
    for item in _name_list(text):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected SOURCE=N items (N >= 0), got {item!r}")
        caps.append((name.strip(), int(value) or None))
    return tuple(caps)


def _name_list(text: str) -> tuple[str, ...]:
    return () if text.strip() in ("", "none") else tuple(p.strip() for p in text.split(",") if p.strip())


def _add_common(p: argparse.ArgumentParser, *, stage: str | None, paths: bool = True) -> None:
    if paths:
        p.add_argument("--student", type=Path, required=True,
                       help="stage1/all: an HF folder (e.g. the pruned e5-small); stage2: a stage-I run folder")
        p.add_argument("--out", type=Path, required=True, help="the run folder")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cache-dir", type=Path, help="models + vector cache (default: $CARE_EDGE_CACHE or "
                   "~/.cache/care-edge)")
    p.add_argument("--encoder", default="embeddinggemma", help="teacher: embeddinggemma | gemma3-270m | gguf:PATH")
    p.add_argument("--threads", type=_positive_int, help="torch + llama.cpp threads (default: all cores)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-per-source", type=_cap, default=20000, help="cap per data source (0 = none)")
    p.add_argument("--source-caps", type=_source_caps, default=(),
                   help="per-source caps overriding --max-per-source, e.g. cmedir=0,icd=8000 (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=_positive_int, default=200, help="steps between checkpoints")
    p.add_argument("--log-every", type=_positive_int, default=10, help="steps per train_log.jsonl line")
    p.add_argument("--no-dropout", dest="dropout", action="store_false", help="train with dropout off")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint (same arguments)")
    p.add_argument("--teacher-missing", choices=["embed", "error"], default="embed",
                   help="texts without a cached teacher vector: compute them, or stop with an error")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if paths:
        p.add_argument("--detach", action="store_true", help="run in the background (log in OUT/train.out)")
    if stage in ("stage1", "stage2"):
        how_long = p.add_mutually_exclusive_group(required=True)
        how_long.add_argument("--steps", type=_positive_int)
        how_long.add_argument("--epochs", type=float)
        p.add_argument("--layers", type=_positive_int, help="keep the first N transformer layers (12 or 6)")
    if stage == "stage1":
        p.add_argument("--dims", type=_positive_int, default=256, help="output dims: 768 | 512 | 256 (Matryoshka)")
        p.add_argument("--max-tokens", type=_positive_int, default=32)
        p.add_argument("--temperature", type=float, default=0.05)
        p.add_argument("--mse-weight", type=float, default=1.0)
        p.add_argument("--nce-weight", type=float, default=1.0)
        p.add_argument("--documents", type=int, default=5000, help="documents (cut to query length) among the texts")
        p.add_argument("--document-chars", type=_positive_int, default=96)
        p.add_argument("--titles", type=int, default=0, help="cMedIR titles (cut to --document-chars) among the texts")
        p.add_argument("--ridge-sample", type=_positive_int, default=2048)
        p.add_argument("--ridge-alpha", type=float, default=0.1)
        p.add_argument("--extra-texts", type=Path, help="more unlabeled query texts, one per line")
        p.add_argument("--sources", type=_name_list, default=train_data.STAGE1_SOURCES,
                       help=f"comma list of {','.join(train_data.STAGE1_SOURCES)} (default: all)")
    if stage == "stage2":
        p.add_argument("--dims", type=_positive_int, help="must equal the stage-I student's dims (the default)")
        p.add_argument("--max-tokens", type=_positive_int, default=64)
        p.add_argument("--temperature", type=float, default=0.02)
        p.add_argument("--kl-weight", type=float, default=1.0)
        p.add_argument("--kl-temperature", type=float, default=0.02)
        p.add_argument("--align-weight", type=float, default=0.1)
        p.add_argument("--kl-co-teacher", type=Path, help="a symmetric encoder folder (make e5-symmetric's) whose "
                       "own cosines are fused into the KL target (tools.train.co_teacher)")
        p.add_argument("--kl-co-weight", type=float, default=0.7, help="the co-teacher's share of that target")
        p.add_argument("--negatives", type=_positive_int, default=7)
        p.add_argument("--negative-ranks", default="4:40", help="FIRST:LAST ranks (1-based) negatives come from")
        p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA,
                       help="corpora whose documents join the negative pool (comma list, or none)")
        p.add_argument("--max-negative-docs", type=_cap, default=None, help="cap on those documents (0 = none)")
        p.add_argument("--sources", type=_name_list, default=train_data.STAGE2_SOURCES,
                       help=f"comma list of {','.join(train_data.STAGE2_SOURCES)} (default: all)")
        _add_llm_labelled(p)


def _add_llm_labelled(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm-labelled", type=_source_caps, default=(),
                   help="stage II: unlabeled stage-I query sources with caps, e.g. kuake=4000,chip=4000,toyhom=0 "
                   "(0 = no cap); each query gets the LLM's top document of --llm-labelled-corpus as a positive")
    p.add_argument("--llm-labelled-corpus", default="cmedir-titles")
    p.add_argument("--llm-labelled-min-score", type=float, default=0.0,
                   help="drop LLM-labelled queries whose top teacher cosine is below this")


def _config_from(args: argparse.Namespace, cls: type, **overrides: Any):
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values["command"] = command_line(args.argv)
    values.update(overrides)
    return cls(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_common(sub.add_parser("stage1", help="alignment to the LLM's query vectors"), stage="stage1")
    _add_common(sub.add_parser("stage2", help="retrieval fine-tuning with mined hard negatives"), stage="stage2")

    p = sub.add_parser("all", help="stage1 -> stage2 into OUT/stage1, OUT/stage2 (then `python -m tools.export "
                       "--student OUT/stage2`)")
    _add_common(p, stage=None)
    p.add_argument("--dims", type=_positive_int, default=256)
    p.add_argument("--layers", type=_positive_int)
    for stage in ("stage1", "stage2"):
        p.add_argument(f"--{stage}-steps", type=_positive_int)
        p.add_argument(f"--{stage}-epochs", type=float, help="(default: 1 epoch when no steps are given)")
    p.add_argument("--stage1-sources", type=_name_list, default=train_data.STAGE1_SOURCES)
    p.add_argument("--stage2-sources", type=_name_list, default=train_data.STAGE2_SOURCES)
    p.add_argument("--documents", type=int, default=5000, help="stage I: documents among the texts")
    p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA)
    p.add_argument("--max-negative-docs", type=_cap, default=None)

    p = sub.add_parser("teacher", help="compute the teacher vectors a stage needs (sharded like build_index)")
    p.add_argument("stage", choices=["stage1", "stage2"])
    _add_common(p, stage=None, paths=False)
    p.set_defaults(student=Path("."), out=Path("."), detach=False)
    p.add_argument("--shard", default="0/1", help="i/N: this process's share (see tools.build.index)")
    p.add_argument("--documents", type=int, default=5000)
    p.add_argument("--document-chars", type=_positive_int, default=96)
    p.add_argument("--titles", type=int, default=0)
    p.add_argument("--extra-texts", type=Path)
    p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA)
    p.add_argument("--max-negative-docs", type=_cap, default=None)
    p.add_argument("--sources", type=_name_list, help="the stage's sources (default: all of them)")
    _add_llm_labelled(p)

    p = sub.add_parser("alignment", help="held-out cosine of an exported encoder to the LLM's query vectors")
    p.add_argument("--encoder-dir", type=Path, required=True, help="an exported query-encoder folder")
    p.add_argument("--tasks", type=_name_list, default=("cmedir-retrieval", "icd-coding-de", "icd-coding-zh"))
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--encoder", default="embeddinggemma")

    p = sub.add_parser("bench", help="seconds per stage-I step (random targets, no teacher)")
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--layers", type=_positive_int)
    p.add_argument("--steps", type=_positive_int, default=6)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--max-tokens", type=_positive_int, default=32)
    p.add_argument("--dims", type=_positive_int, default=256)
    p.add_argument("--threads", type=_positive_int)
    return parser


def _detach(argv: Sequence[str], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tools.train", *[a for a in argv if a != "--detach"]]
    with open(out / "train.out", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO, start_new_session=True)
    (out / "train.pid").write_text(f"{process.pid}\n")
    print(f"started pid {process.pid}; output in {out / 'train.out'}, progress in {out / train_state.LOG_FILE}")
    return 0


def _run_all(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    s1 = _config_from(args, Stage1Config, out=out / "stage1", steps=args.stage1_steps,
                      epochs=args.stage1_epochs or (None if args.stage1_steps else 1.0), sources=args.stage1_sources)
    first = train_stage1(s1)
    s2 = _config_from(args, Stage2Config, student=first.run_dir, out=out / "stage2", layers=None, dims=None,
                      steps=args.stage2_steps, epochs=args.stage2_epochs or (None if args.stage2_steps else 1.0),
                      sources=args.stage2_sources)
    second = train_stage2(s2)
    return {"stage1": str(first.model_dir), "stage2": str(second.model_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if getattr(args, "detach", False):
            return _detach(argv, args.out)
        if args.command == "stage1":
            result = train_stage1(_config_from(args, Stage1Config))
            print(json.dumps({"model": str(result.model_dir), "timings": result.run.get("timings")}))
        elif args.command == "stage2":
            result = train_stage2(_config_from(args, Stage2Config))
            print(json.dumps({"model": str(result.model_dir), "timings": result.run.get("timings")}))
        elif args.command == "all":
            print(json.dumps(_run_all(args)))
        elif args.command == "teacher":
            from tools.build.index import Shard

            try:
                shard = Shard.parse(args.shard)
            except argparse.ArgumentTypeError as exc:
                raise BadInput(str(exc)) from None
            cls = Stage2Config if args.stage == "stage2" else Stage1Config
            config = _config_from(args, cls, steps=1, sources=args.sources or cls.sources)
            print(json.dumps(precompute_teacher(args.stage, config, shard)))
        elif args.command == "alignment":
            print(json.dumps(alignment_cosine(args.encoder_dir, args.tasks, args.data_dir, args.cache_dir,
                                              args.encoder)))
        elif args.command == "bench":
            texts = train_data.stage1_data(args.data_dir, max_per_source=max(args.batch_size, 200),
                                           documents=50).texts
            print(json.dumps(bench_steps(args.student, layers=args.layers, steps=args.steps,
                                         batch_size=args.batch_size, max_tokens=args.max_tokens, dims=args.dims,
                                         texts=texts, threads=args.threads)))
    except Stopped as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except (BadInput, EvalLeakError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0
