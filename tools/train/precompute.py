"""Compute the teacher vectors a stage will need ahead of training (``python -m tools.train teacher stage1|stage2``,
shardable across processes with ``--shard i/N``)."""

from __future__ import annotations

from tools.train import data as train_data
from tools.train.config import CommonConfig
from tools.train.runs import open_teacher
from tools.train.stage1 import stage1_texts


def precompute_teacher(stage: str, config: CommonConfig, shard) -> dict[str, int]:
    """Compute (this shard's part of) the teacher vectors ``stage`` will need; returns counts per prompt."""
    teacher = open_teacher(config)
    if stage == "stage1":
        needed = {"query": stage1_texts(config).texts}  # type: ignore[arg-type]
    else:
        data = train_data.stage2_data(config.data_dir, max_per_source=config.max_per_source,
                                      negative_corpora=config.negative_corpora,  # type: ignore[attr-defined]
                                      max_negative_documents=config.max_negative_docs,  # type: ignore[attr-defined]
                                      seed=config.seed, sources=config.sources,
                                      source_caps=dict(config.source_caps))
        needed = {"query": data.queries, "document": data.documents}
        labelled = dict(config.llm_labelled)  # type: ignore[attr-defined]
        if labelled:  # the labelled pairs' queries and documents are among these texts
            from tools.data.registry import load_corpus

            for texts in train_data.unlabeled_queries(config.data_dir, labelled, config.seed).values():
                needed["query"] = needed["query"] + texts
            corpus = config.llm_labelled_corpus  # type: ignore[attr-defined]
            needed["document"] = needed["document"] + [d.text for d in load_corpus(corpus, config.data_dir)]
    report = {}
    for side, texts in needed.items():
        before = len(teacher.missing(texts, side))
        embedded = teacher.embed_missing(texts, side, shard=shard, progress=config.progress)
        report[side] = {"texts": len(set(texts)), "missing_before": before, "embedded_now": embedded}
    return report
