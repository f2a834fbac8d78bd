"""The notebooks run end to end on small data, importing churnml only."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    from nbclient import NotebookClient

    monkeypatch.setenv("CHURNML_NOTEBOOK_USERS", "1500")
    monkeypatch.setenv("CHURNML_NOTEBOOK_DIR", str(tmp_path))
    nb = jupytext.read(path)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "drivers_report.html").exists()
    assert list((tmp_path / "lists").glob("*/recall_list.parquet"))


def test_notebooks_do_not_copy_library_code():
    for path in NOTEBOOKS:
        text = path.read_text()
        assert "def " not in text and "class " not in text, f"{path.name} defines its own logic"
