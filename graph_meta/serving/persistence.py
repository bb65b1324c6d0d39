"""Saving and loading a fitted :class:`~graph_meta.model.GraphMetaRecommender`.

A model is one ``torch.save`` file of tensors (the predictor state's arrays by name, the item
ids, the network's weights) with the JSON of its config, ids and fit info inside, and that
JSON beside it (``path.json``) for people. Files of every earlier version load
(``tests/test_hardening_model.py``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from graph_meta.config import Config
from graph_meta.errors import DataError, short

if TYPE_CHECKING:
    from graph_meta.model import GraphMetaRecommender

__all__ = ["load", "save"]


def save(model: GraphMetaRecommender, path: str | Path) -> Path:
    """Write ``path`` (tensors, the item ids and the JSON of config and ids, ``torch.save``)
    and ``path.json`` (that JSON, readable).

    Each goes to a temporary sibling renamed into place, ``path.json`` first; :func:`load`
    reads ``path`` alone, so its rename is the one commit point: a save interrupted at any
    moment leaves the old model or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = dict(model.state)
    backup = model.live_state.item_backup
    if backup:  # the trained states, not those moved by observed ratings
        cache["item_states"] = model.state.item_states.copy()
        for pos, row in backup.items():
            cache["item_states"][pos] = row
    blob: dict[str, Any] = {
        "cache": {k: torch.from_numpy(np.asarray(v)) for k, v in cache.items()},
        "item_ids": list(model.item_ids)}
    if model.net is not None:
        blob["net"] = model.net.state_dict()
    elif model.net_state is not None:
        blob["net"] = model.net_state
    meta = {"config": model.config.to_dict(), "item_ids": model.item_ids,
            "user_ids": sorted(model.user_pos, key=model.user_pos.__getitem__),
            "fit_info": model.fit_info}
    blob["meta"] = json.dumps(meta)
    _replace_file(path.with_suffix(path.suffix + ".json"),
                  lambda fh: fh.write(blob["meta"].encode("utf-8")))
    _replace_file(path, lambda fh: torch.save(blob, fh))  # the commit point
    return path


def load(cls: type[GraphMetaRecommender], path: str | Path) -> GraphMetaRecommender:
    """A predict-ready model from :func:`save` (``torch.load(weights_only=True)``).

    Only ``path`` is read (``path.json`` too for a model saved before the JSON travelled
    inside it). A missing, empty, incomplete or foreign file is a
    :class:`~graph_meta.errors.DataError` naming it."""
    path = Path(path)
    blob, meta, source = _read_model(path)
    try:
        config = Config.from_dict(meta["config"], source=str(source))
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid config: {short(str(exc), 160)}", file=source,
                        field="config") from exc
    model = cls(config)
    model.cache = {k: v.numpy() for k, v in blob["cache"].items()}
    # the tensors' own copy of the ids is authoritative (add_items may have replaced
    # `path` and not yet `path.json`)
    model.item_ids = [str(i) for i in blob.get("item_ids", meta["item_ids"])]
    if "item_states" in model.cache and len(model.item_ids) != len(
            model.cache["item_states"]):
        raise DataError(f"{len(model.cache['item_states'])} item states but "
                        f"{len(model.item_ids)} item ids; the run is damaged, train again",
                        file=path)
    model.item_pos = {i: k for k, i in enumerate(model.item_ids)}
    model.user_pos = {str(u): k for k, u in enumerate(meta["user_ids"])}
    model.fit_info = dict(meta.get("fit_info", {}))
    model.net_state = blob.get("net")
    if "head" not in config.meta.adapt and model.state.lr_head is not None:
        # saved before the learners owned their updates: MAML, FOMAML and Reptile then
        # served head steps that training (meta.adapt = "vector") never took
        model.state.lr_head = np.zeros_like(model.state.lr_head)
    return model


def _replace_file(path: Path, write: Any) -> None:
    """Write ``path`` through ``write(binary file)`` into a temporary sibling, flushed to
    disk, then renamed into place: ``path`` is the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_model(path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The tensors file of :meth:`GraphMetaRecommender.save`, its JSON (config and ids) and
    the file that JSON came from; every problem is a DataError naming the file."""
    if not path.is_file():
        raise DataError("model file not found (train first: graph-meta train)", file=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for empty, truncated, foreign files
        raise DataError("not a readable model file (empty, incomplete or corrupt: "
                        f"{short(str(exc), 100)})", file=path) from exc
    cache = blob.get("cache") if isinstance(blob, dict) else None
    if not isinstance(cache, dict) or not all(isinstance(v, Tensor) for v in cache.values()):
        raise DataError("not a graph-meta model file (no tensors of a model)", file=path)
    if not isinstance(blob.get("net", {}), dict) or not isinstance(blob.get("item_ids", []),
                                                                   list):
        raise DataError("not a graph-meta model file (bad 'net' or 'item_ids')", file=path)
    source, text = path, blob.get("meta")
    if text is None:  # saved before the JSON travelled inside the tensors file
        source = path.with_suffix(path.suffix + ".json")
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError("file not found (the config and ids of the model)",
                            file=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot be read: {short(str(exc), 100)}", file=source) from exc
    if not isinstance(text, str):
        raise DataError("not a graph-meta model file (bad 'meta')", file=path)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=source,
                        line=exc.lineno if source != path else None) from exc
    if not isinstance(meta, dict):
        raise DataError("must be a JSON object", file=source)
    for key, kind in (("config", dict), ("user_ids", list), ("item_ids", list),
                      ("fit_info", dict)):
        if key in meta and not isinstance(meta[key], kind):
            raise DataError(f"must be a JSON {'object' if kind is dict else 'array'}",
                            file=source, field=key)
    for key in ("config", "user_ids", "item_ids"):
        if key not in meta:
            raise DataError("required key is missing", file=source, field=key)
    return blob, meta, source
