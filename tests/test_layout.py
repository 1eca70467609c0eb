"""The package installs under namespaced names and the server stays light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_only_namespaced_top_level_names(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("carl_studio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"carl_engine", "carl_studio"}
    assert "carl_studio/tools/__init__.py" in names
    assert "carl_studio/server/__init__.py" in names
    assert "carl_studio/cli/__init__.py" in names


def test_engine_errors_pickle_with_their_fields():
    import pickle

    from carl_engine.errors import InvalidSpecError, JobNotFoundError, MissingCredentialsError

    err = pickle.loads(pickle.dumps(InvalidSpecError("max_steps", "must be between 1 and 1,000,000", got=-1)))
    assert isinstance(err, ValueError) and err.field == "max_steps" and "got -1" in str(err)
    missing = pickle.loads(pickle.dumps(MissingCredentialsError("HF_TOKEN", "hf_jobs")))
    assert missing.variable == "HF_TOKEN" and isinstance(missing, PermissionError)
    assert isinstance(JobNotFoundError("7Q2"), KeyError)


def _imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each .py file under `folder` imports (absolute names), parsed, not run."""
    import ast

    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_arrows_point_one_way_engine_knows_no_front_end_and_tools_know_no_mcp():
    for path, names in _imported_modules(ROOT / "carl_engine").items():
        assert not {n for n in names if n.startswith("carl_studio")}, path
    for path, names in _imported_modules(ROOT / "tools").items():
        assert not {n for n in names if n == "mcp" or n.startswith("mcp.")}, path
        assert not {n for n in names if n.startswith(("carl_studio.server", "carl_studio.cli"))}, path
