"""Where the shipped artifacts live, and how ``--index`` / ``--encoder`` arguments resolve to directories.

``prebuilt_index/`` is found at, in order: ``$CARE_EDGE_INDEX_DIR``; ``sys._MEIPASS/prebuilt_index`` inside a
PyInstaller bundle; ``<repo root>/prebuilt_index`` (the parent of the ``edge`` package). ``prebuilt_index/default.json``
names the default collection and query encoder: ``{"collection": "...", "query_encoder": "query_encoder"}``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ArtifactError
from edge.integrity import read_regular_file

ENV_INDEX_DIR = "CARE_EDGE_INDEX_DIR"
ENV_USER_COLLECTIONS_DIR = "CARE_EDGE_COLLECTIONS_DIR"
PREBUILT_DIR_NAME = "prebuilt_index"
DEFAULTS_FILE = "default.json"
DEFAULT_ENCODER_NAME = "query_encoder"
_FIX = "run `make prebuilt` or pass --index DIR"


@dataclass(frozen=True)
class Defaults:
    collection: str
    query_encoder: str


def prebuilt_index_dir() -> Path:
    """The directory that holds the shipped collections and query encoder (it need not exist)."""
    configured = os.environ.get(ENV_INDEX_DIR)
    if configured:
        return Path(configured).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / PREBUILT_DIR_NAME
    return Path(__file__).resolve().parent.parent / PREBUILT_DIR_NAME


def user_collections_dir() -> Path:
    """Where ``care-edge index --into NAME`` writes a user's own collections (it need not exist):
    ``$CARE_EDGE_COLLECTIONS_DIR``, else ``$XDG_DATA_HOME/care-edge/collections``, else
    ``~/.local/share/care-edge/collections``. Entries starting with a dot are work folders, not collections."""
    configured = os.environ.get(ENV_USER_COLLECTIONS_DIR)
    if configured:
        return Path(configured).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home else Path.home() / ".local" / "share"
    return base / "care-edge" / "collections"


def read_defaults(prebuilt: Path | None = None) -> Defaults | None:
    """The names in ``default.json``, or None when there is no such file."""
    root = prebuilt if prebuilt is not None else prebuilt_index_dir()
    path = root / DEFAULTS_FILE
    try:
        raw = json.loads(read_regular_file(path, 1 << 16).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}): {_FIX}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("collection"), str) or not raw["collection"]:
        raise ArtifactError(f"{path} must be a JSON object with a \"collection\" name: {_FIX}")
    encoder = raw.get("query_encoder", DEFAULT_ENCODER_NAME)
    if not isinstance(encoder, str) or not encoder:
        raise ArtifactError(f"{path}: \"query_encoder\" must be a directory name: {_FIX}")
    return Defaults(collection=raw["collection"], query_encoder=encoder)


def _named_or_path(argument: str, prebuilt: Path) -> Path:
    candidate = Path(argument).expanduser()
    if candidate.is_dir():
        return candidate
    return prebuilt / argument


def resolve_collection_dir(index: str | None) -> Path:
    """``--index``: an existing directory, else a collection name under prebuilt_index, else one under
    :func:`user_collections_dir`, else the default."""
    prebuilt = prebuilt_index_dir()
    if index:
        path = _named_or_path(index, prebuilt)
        if not path.is_dir() and (user_collections_dir() / index).is_dir():
            path = user_collections_dir() / index
    else:
        defaults = read_defaults(prebuilt)
        if defaults is None:
            raise ArtifactError(f"no default collection: {prebuilt / DEFAULTS_FILE} is missing: {_FIX}")
        path = prebuilt / defaults.collection
    if not path.is_dir():
        raise ArtifactError(f"no collection at {path}: {_FIX}")
    return path


def resolve_encoder_dir(encoder: str | None) -> Path:
    """``--encoder``: an existing directory, else a name under prebuilt_index, else the default query encoder."""
    prebuilt = prebuilt_index_dir()
    if encoder:
        path = _named_or_path(encoder, prebuilt)
    else:
        defaults = read_defaults(prebuilt)
        path = prebuilt / (defaults.query_encoder if defaults else DEFAULT_ENCODER_NAME)
    if not path.is_dir():
        raise ArtifactError(f"no query encoder at {path}: run `make prebuilt` or pass --encoder DIR")
    return path
