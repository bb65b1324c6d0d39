"""``notebooks/investigate.ipynb`` and ``notebooks/implicit.ipynb`` run top to bottom on
synthetic data and save their plots."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "investigate.ipynb"
IMPLICIT_NOTEBOOK = NOTEBOOK.with_name("implicit.ipynb")


def test_notebook_runs_and_saves_plots(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRAPH_META_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("GRAPH_META_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    for name in ("cold_item_neighborhood.png", "cross_category_links.png",
                 "few_shot_curve.png", "adaptation_steps.png"):
        png = tmp_path / name
        assert png.is_file() and png.stat().st_size > 10_000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.environ["GRAPH_META_NOTEBOOK_QUICK"] == "1"


def test_implicit_notebook_runs_shows_relevance_and_saves_its_plot(tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("GRAPH_META_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("GRAPH_META_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.delenv("GRAPH_META_NOTEBOOK_DATA", raising=False)
    nb = nbformat.read(IMPLICIT_NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(IMPLICIT_NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = " ".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "relevance" in html and "predicted" not in html and "rating" not in html
    png = tmp_path / "implicit_few_shot_recall.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
