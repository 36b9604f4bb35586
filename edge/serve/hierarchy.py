"""Parent and children of a code in a code collection (ICD-10: ``A00`` is the parent of ``A00.0``).

A code's parent drops its last character after the dot (``A00.0`` -> ``A00``; ``A00.01`` -> ``A00.0``); a code
without a dot is a category with no parent in the collection. Children are the codes one level below, found by an id
prefix scan in the doc store.
"""

from __future__ import annotations

from edge import Collection
from edge.docstore import Document

MAX_CHILDREN = 200


def parent_code(code: str) -> str | None:
    head, dot, tail = code.partition(".")
    if not dot:
        return None
    return head if len(tail) <= 1 else f"{head}.{tail[:-1]}"


def children(collection: Collection, code: str, limit: int = MAX_CHILDREN) -> list[Document]:
    """The documents whose id is a direct child code of ``code``, in code order."""
    prefix = code if "." in code else code + "."
    # Grandchildren share the prefix, so ask for more than the limit and keep the direct children only.
    candidates = collection.fetch_by_id_prefix(prefix, limit * 20)
    return [document for document in candidates if parent_code(document.id) == code][:limit]


def parent(collection: Collection, code: str) -> Document | None:
    wanted = parent_code(code)
    if wanted is None:
        return None
    found = collection.fetch_by_ids([wanted])
    return found[0] if found else None
