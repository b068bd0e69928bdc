"""The runner's kernels do not print the kernel app's TCP warning (one line per run, 80 in
a `make run`), while a warning from the notebook's own code is kept in its outputs."""

from __future__ import annotations

import json

import nbformat

from gapscope.helpers.experiments import run_one


def test_kernel_app_warning_silenced_code_warnings_kept(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell("run_dir = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import json, pathlib, warnings\n"
            "warnings.warn('a real warning from the notebook')\n"
            "pathlib.Path(run_dir, 'results.json').write_text(json.dumps({'ok': 1}))"
        ),
    ]
    src = tmp_path / "nb.ipynb"
    nbformat.write(nb, src)
    status = run_one(src, {"run_dir": str(tmp_path / "run")}, tmp_path / "run", execution_timeout=120)
    assert status["status"] == "ok", status
    err = capfd.readouterr().err
    assert "without encryption" not in err
    executed = json.loads((tmp_path / "run" / "executed.ipynb").read_text())
    outputs = [o.get("text", "") for c in executed["cells"] for o in c.get("outputs", [])]
    assert any("a real warning from the notebook" in "".join(t) for t in outputs), outputs
