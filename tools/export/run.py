"""A finished training run's student -> the runtime's INT8 query-encoder folder, aligned to the document encoder the
run recorded (``run.json``) or to a collection's (``python -m tools.export --student RUN``)."""

from __future__ import annotations

from pathlib import Path

from edge.errors import BadInput
from tools.export.query_encoder import EXPORT_MAX_TOKENS, export_query_encoder
from tools.train import state as train_state, student as st
from tools.train.config import STUDENT_PROMPT


def export_student(student_dir: Path, out_dir: Path, document_encoder: dict, *, name: str = "care-query-encoder",
                   max_tokens: int = EXPORT_MAX_TOKENS, command: str = "", dims: int | None = None) -> dict:
    """The runtime's INT8 query-encoder folder from a trained student, aligned to ``document_encoder``.
    ``dims`` below the student's output exports a Matryoshka truncation, aligned to the same document encoder
    truncated to those dims (a collection built with ``--dims`` the same)."""
    model_dir = st.resolve_student_dir(student_dir)
    trained_dims = st.output_dims(st.load_student(model_dir))
    if document_encoder.get("dims") != trained_dims:
        raise BadInput(f"the student outputs {trained_dims} dims but the document encoder it is aligned to has "
                       f"{document_encoder.get('dims')}")
    if dims is not None and dims != trained_dims:
        if not 0 < dims < trained_dims:
            raise BadInput(f"--dims {dims}: a {trained_dims}-dims student can only be truncated to fewer dims")
        document_encoder = {**document_encoder, "dims": dims}
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    return export_query_encoder(model_dir=model_dir, out_dir=Path(out_dir), prompt=STUDENT_PROMPT,
                                max_tokens=max_tokens, alignment=document_encoder, name=name,
                                base_model="multilingual-e5-small", licenses=student_licenses(),
                                command=command or "python -m tools.export --student", dims=dims)


def student_licenses() -> list[dict]:
    """A CARE student is derived from e5-small's weights and distilled from EmbeddingGemma's vectors (its training
    targets), so the Gemma Terms of Use travel with it as well as e5's MIT licence."""
    from tools.models.cache import LICENSES

    return [LICENSES["e5-small"], {**LICENSES["embeddinggemma"], "use": "distillation targets of the training"}]


def document_encoder_of(student_dir: Path) -> dict | None:
    """The document encoder a training run recorded (``run.json`` beside ``model/``), if any."""
    model_dir = st.resolve_student_dir(student_dir)
    for run_dir in (model_dir.parent, model_dir):
        run = train_state.read_run(run_dir)
        if run.get("document_encoder"):
            return run["document_encoder"]
    return None
