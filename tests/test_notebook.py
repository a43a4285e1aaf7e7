"""notebooks/reproduce_figures.ipynb runs top to bottom and regenerates every table and figure."""
from __future__ import annotations

import shutil

import nbclient
import nbformat
import pytest

from support.paths import REPO, FIXTURES as _FIXTURES

NOTEBOOK = REPO / "notebooks" / "reproduce_figures.ipynb"
FIXTURES = _FIXTURES / "records"


@pytest.mark.slow
def test_notebook_regenerates_everything(tmp_path, monkeypatch):
    root = tmp_path / "results"
    shutil.copytree(REPO / "results" / "reported", root / "reported")
    shutil.copytree(FIXTURES / "runs", root / "runs")
    shutil.copytree(FIXTURES / "profiles", root / "profiles")
    out = tmp_path / "out"
    # The kernel inherits these: fixture records in, a temp folder out, costs from the cached profiles.
    monkeypatch.setenv("HRBENCH_RESULTS", str(root))
    monkeypatch.setenv("HRBENCH_REPORT_OUT", str(out))
    monkeypatch.setenv("HRBENCH_LIVE", "0")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell

    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        f"{d}{part}.{e}" for d in ("coco", "ochuman", "crowdpose") for part in ("", "_breakdown", "_intervals")
        for e in ("md", "tex", "csv"))
    # 5 accuracy-vs-cost figures + AP per occlusion level for coco, ochuman, crowdpose
    assert len(list((out / "figures").glob("*.png"))) == 5 + 3 and len(list((out / "figures").glob("*.pdf"))) == 5 + 3
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "3 malformed file(s) skipped" in text
    assert "coco     AP vs gflops   Pareto front: HRNeXt-S 256x192, HRNeXt-B 384x288, HRFormer-B 384x288" in text
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert sum("image/png" in o.data for o in shown) == 5 + 3
    assert sum("text/markdown" in o.data for o in shown) == 3
    assert not (REPO / "notebooks" / "results").exists()
