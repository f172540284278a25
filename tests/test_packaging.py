"""The built wheel works outside the checkout: its packages, its starter files, ``swarm init``.

The wheel is built from a copy of the checkout's files (so the checkout gets no
``build/``), installed with ``--target`` into a folder of its own, and run from
another folder with that folder first on ``PYTHONPATH``: the interpreter is the
checkout's (its dependencies are installed there), but every ``swarm`` module
must come from the wheel, never from the checkout or its editable install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "swarm", "agents", "protocols", "configs", "notebooks")


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout and installed into a folder of its own."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", base / "dist", src, cwd=base)
    (wheel,) = (base / "dist").glob("swarm-*.whl")
    site = base / "site"
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", site, wheel, cwd=base)
    return site


def _outside(site: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout, and an environment that finds the install first."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    return work, {"PYTHONPATH": str(site)}


def test_the_wheel_holds_the_three_packages(installed: Path, tmp_path: Path) -> None:
    work, env = _outside(installed, tmp_path)
    probe = ("import json, swarm, swarm.agents, swarm.protocols, swarm.cli.init, swarm.agents.roles,"
             " swarm.sandbox.pid1;"
             "print(json.dumps({m.__name__: m.__file__ for m in (swarm, swarm.agents,"
             " swarm.protocols, swarm.cli.init, swarm.agents.roles, swarm.sandbox.pid1)}))")

    done = _run(sys.executable, "-c", probe, cwd=work, env=env)

    files = json.loads(done.stdout)
    assert set(files) == {"swarm", "swarm.agents", "swarm.protocols", "swarm.cli.init",
                          "swarm.agents.roles", "swarm.sandbox.pid1"}
    for name, file in files.items():
        assert Path(file).is_relative_to(installed), f"{name} imported from {file}"
    assert (installed / "swarm" / "agents" / "base.py").is_file()
    assert not (installed / "agents").exists() and not (installed / "protocols").exists()
    assert (installed / "swarm" / "py.typed").is_file()


def test_swarm_init_from_the_wheel_writes_the_quickstart(installed: Path, tmp_path: Path) -> None:
    work, env = _outside(installed, tmp_path)
    script = installed / "bin" / "swarm"

    version = _run(script, "--version", cwd=work, env=env)
    done = _run(script, "init", "project", cwd=work, env=env)

    assert version.stdout.strip() == "swarm 0.1.0"
    assert "swarm run configs/quickstart.yaml" in done.stdout
    project = work / "project"
    assert (project / "configs" / "quickstart.yaml").read_bytes() == (
        ROOT / "configs" / "quickstart.yaml").read_bytes()
    for book in (ROOT / "notebooks").glob("*.ipynb"):
        assert (project / "notebooks" / book.name).read_bytes() == book.read_bytes()
    check = _run(script, "config", "check", "configs/quickstart.yaml", cwd=project, env=env)
    assert "name: quickstart" in check.stdout
    skills = ROOT / "configs" / "skills" / "largest.jsonl"  # configs/skills.yaml's file skill
    assert (project / "configs" / "skills" / skills.name).read_bytes() == skills.read_bytes()
    check = _run(script, "config", "check", "configs/skills.yaml", cwd=project, env=env)
    assert f"file: {project / 'configs' / 'skills' / skills.name}" in check.stdout


def test_the_starter_files_are_the_checkouts_own() -> None:
    """The package's starter files are links to configs/ and notebooks/, never stale copies."""
    starter = ROOT / "swarm" / "cli" / "starter"
    for name in ("configs", "notebooks"):
        assert (starter / name).is_symlink(), f"{starter / name} must link to {name}/"
        assert (starter / name).resolve() == ROOT / name
