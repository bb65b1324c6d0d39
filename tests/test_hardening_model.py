"""Security and file safety (issue 18, "Hardening"): the model files.

``GraphMetaRecommender.save`` replaces ``model.pt`` and ``model.pt.json`` with one commit point
(a save killed at any moment leaves the old model or the new one loadable), and every problem
in loading them is one line naming the file, exit code 2 on the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graph_meta.serving.persistence as model_module
from graph_meta.errors import DataError
from graph_meta.model import GraphMetaRecommender
from training.cli import main as cli

GOOD = Path(__file__).resolve().parent / "data" / "good"


def _one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


def _model(n_items: int, tag: float) -> GraphMetaRecommender:
    model = GraphMetaRecommender()
    model.item_ids = [f"i{k}" for k in range(n_items)]
    model.item_pos = {i: k for k, i in enumerate(model.item_ids)}
    model.user_pos = {"u0": 0, "u1": 1}
    model.cache = {"item_states": np.full((n_items, 3), tag), "mu": np.array([tag])}
    model.fit_info = {"tag": tag}
    return model


def _loaded_tag(path: Path) -> tuple[float, int]:
    model = GraphMetaRecommender.load(path)
    assert len(model.item_ids) == len(model.cache["item_states"])
    assert model.fit_info["tag"] == float(model.cache["mu"][0])
    return float(model.cache["mu"][0]), len(model.item_ids)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = _model(4, 1.0).save(tmp_path / "run" / "model.pt")
    assert _loaded_tag(path) == (1.0, 4)
    assert json.loads((tmp_path / "run" / "model.pt.json").read_text())["item_ids"][-1] == "i3"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.json"]
    # a model saved before the JSON travelled inside the tensors file still loads
    blob = torch.load(path, weights_only=True)
    del blob["meta"]
    torch.save(blob, path)
    assert _loaded_tag(path) == (1.0, 4)


class _Killed(BaseException):
    """Stands for the process being killed at that point."""


@pytest.mark.parametrize("kill_at", ["json write", "json rename", "model write",
                                     "model rename", "never"])
def test_a_save_killed_at_any_point_leaves_a_complete_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_at: str) -> None:
    path = _model(4, 1.0).save(tmp_path / "model.pt")
    real_replace, real_write = os.replace, model_module._replace_file
    renames: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        renames.append(Path(dst).name)
        if kill_at == f"{'json' if Path(dst).suffix == '.json' else 'model'} rename":
            raise _Killed
        real_replace(src, dst)

    def replace_file(target: Path, write: Callable[[Any], Any]) -> None:
        def half_then_killed(fh: Any) -> None:
            fh.write(b'{"config": {"mo' if target.suffix == ".json" else b"PK\x03\x04 half")
            raise _Killed

        killed = kill_at == f"{'json' if target.suffix == '.json' else 'model'} write"
        real_write(target, half_then_killed if killed else write)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(model_module, "_replace_file", replace_file)
    with pytest.raises(_Killed) if kill_at != "never" else contextlib.nullcontext():
        _model(6, 2.0).save(path)
    monkeypatch.undo()
    assert _loaded_tag(path) == ((2.0, 6) if kill_at == "never" else (1.0, 4))
    if kill_at == "never":
        assert renames == ["model.pt.json", "model.pt"]  # the tensors last: the commit point
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _bad_files() -> dict[str, Callable[[Path], None]]:
    def truncate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    def blob_edit(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
        def apply(path: Path) -> None:
            blob = torch.load(path, weights_only=True)
            edit(blob)
            torch.save(blob, path)

        return apply

    def old_format(json_text: str | None) -> Callable[[Path], None]:
        def apply(path: Path) -> None:
            blob_edit(lambda b: b.pop("meta"))(path)
            side = path.with_suffix(".pt.json")
            if json_text is None:
                side.unlink()
            else:
                side.write_text(json_text, encoding="utf-8")

        return apply

    return {
        "missing": lambda p: p.unlink(),
        "empty": lambda p: p.write_bytes(b""),
        "truncated": truncate,
        "garbage": lambda p: p.write_bytes(os.urandom(3000)),
        "a list": lambda p: torch.save([1, 2, 3], p),
        "meta not an object": blob_edit(lambda b: b.__setitem__("meta", "[1, 2]")),
        "meta invalid json": blob_edit(lambda b: b.__setitem__("meta", "{\"config\": ")),
        "config of the wrong type": blob_edit(
            lambda b: b.__setitem__("meta", json.dumps({"config": [], "item_ids": [],
                                                        "user_ids": []}))),
        "user_ids missing": blob_edit(
            lambda b: b.__setitem__("meta", json.dumps({"config": {}, "item_ids": []}))),
        "states and ids disagree": blob_edit(
            lambda b: b["cache"].__setitem__("item_states", b["cache"]["item_states"][:-1])),
        "old format, json missing": old_format(None),
        "old format, json half written": old_format('{"config": {"mod'),
        "old format, json of the wrong type": old_format("[]"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_every_load_error_is_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    run = tmp_path / "run"
    path = _model(4, 1.0).save(run / "model.pt")
    _bad_files()[case](path)
    with pytest.raises(DataError) as info:
        GraphMetaRecommender.load(path)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400 and str(path) in text, text
    result = CliRunner().invoke(cli, ["add-items", str(GOOD), "--run", str(run)])
    assert result.exit_code == 2, result.output
    assert str(path) in _one_error_line(result.output)
