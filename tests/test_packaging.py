"""Package hygiene: every imported distribution is declared; installing dandiget does not
load a pytest plugin into other projects' test sessions."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "dandiget"

#: Imports allowed without being a base dependency, and where they must be declared instead.
OPTIONAL = {
    "keyring": "keyring",  # api.find_api_key, the ``dandiget[keyring]`` extra
    "pytest": "test",  # dandiget.testing's opt-in pytest plugin and peer fixture
    "distributed": "dask",  # executors/dask.py, the ``dandiget[dask]`` extra
}


def imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"dandiget", "__future__"}


def requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_import_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = requirement_names(project["dependencies"])
    extras = {k: requirement_names(v) for k, v in project["optional-dependencies"].items()}
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(imported_top_level_modules()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        declared_in = base | extras.get(OPTIONAL.get(module, ""), set())
        if not names & declared_in:
            missing.append(f"{module} (from {sorted(names)})")
    assert missing == [], "imported but not declared in pyproject.toml: " + ", ".join(missing)


def test_the_pytest_plugin_is_opt_in(tmp_path) -> None:
    groups = importlib.metadata.entry_points(group="pytest11")
    assert [e for e in groups if e.value.startswith("dandiget")] == []
    (tmp_path / "test_other_project.py").write_text(
        "def test_uses_the_fixture(archive_factory):\n    assert archive_factory\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
           "no:randomly", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "fixture 'archive_factory' not found" in r.stdout
    r = subprocess.run([*cmd, "-p", "dandiget.testing.pytest_plugin"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_peer_fails_naming_the_install_command(tmp_path, monkeypatch) -> None:
    """No test installs dandi-cli mid-run; a missing one fails and says how to install it."""
    from dandiget.testing.peer import INSTALL_COMMAND, find_dandi_cli

    venv = tmp_path / "no-peer"
    monkeypatch.setenv("DANDIGET_PEER_VENV", str(venv))
    with pytest.raises(pytest.fail.Exception) as exc:
        find_dandi_cli()
    assert INSTALL_COMMAND in str(exc.value) and str(venv) in str(exc.value)
    assert not venv.exists()  # nothing was created or installed


def test_readme_and_ci_install_the_peer_the_same_way() -> None:
    from dandiget.testing.peer import INSTALL_COMMAND

    readme = (REPO / "README.md").read_text()
    assert INSTALL_COMMAND in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert INSTALL_COMMAND in ci
