"""A run moves only the run directories swarm made; the user's files stay where they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.config import SwarmConfig, load_config
from swarm.errors import SwarmError
from swarm.lineage.gitstore import GitLineageStore
from swarm.runtime.local_launcher import LocalLauncher
from swarm.runtime.rundir import RUN_MARKER
from tests.conftest import SMALL, free_base_port

USER_FILES = {"notes.txt": "mine\n", "code/main.py": "print('mine')\n", ".bashrc": "# mine\n"}


def _config(tmp_path: Path, lineage: str) -> SwarmConfig:
    model = tmp_path / "model"  # an existing model folder: no tiny model is built
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return load_config(SMALL, [f"swarm.lineage={lineage}", f"model.path={model}",
                               f"transport.base_port={free_base_port()}"])


def _plant(folder: Path) -> None:
    for rel, text in USER_FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def _assert_untouched(folder: Path) -> None:
    for rel, text in USER_FILES.items():
        assert (folder / rel).read_text() == text, f"{folder / rel} moved or changed"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f"{folder.name}.")]


def test_lineage_in_a_folder_of_user_files_moves_none_of_them(tmp_path: Path) -> None:
    # Prepare: a folder swarm did not make, holding the user's files.
    home = tmp_path / "home"
    _plant(home)
    config = _config(tmp_path, str(home / "lineage"))
    # Execute: a first run there, then a second new run.
    first = LocalLauncher(config)
    assert first.prepare() == home
    GitLineageStore.open(config.lineage_dir, create=True).close()  # what the coordinator makes
    with pytest.raises(SwarmError, match="swarm did not create it.*--resume"):
        LocalLauncher(config).prepare()
    # Assert: nothing was moved, the folder was not claimed, and a resume is allowed.
    _assert_untouched(home)
    assert first.archived is None and not (home / RUN_MARKER).exists()
    assert LocalLauncher(config, resume=True).prepare() == home
    _assert_untouched(home)


def test_home_directory_is_never_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: ~/lineage, with a marker planted in the home directory itself.
    home = tmp_path / "home"
    _plant(home)
    (home / RUN_MARKER).write_text("planted\n")
    (home / "config.json").write_text("{}")
    monkeypatch.setenv("HOME", str(home))
    config = _config(tmp_path, "~/lineage")
    # Execute / Assert
    with pytest.raises(SwarmError, match="it is the home directory"):
        LocalLauncher(config).prepare()
    _assert_untouched(home)


def test_relative_lineage_in_the_working_directory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: `lineage: lineage` run from a folder of user files.
    work = tmp_path / "work"
    _plant(work)
    monkeypatch.chdir(work)
    config = _config(tmp_path, "lineage")
    # Execute: the run dir is the working directory; it is written into, never moved.
    run_dir = LocalLauncher(config).prepare()
    GitLineageStore.open(config.lineage_dir, create=True).close()
    with pytest.raises(SwarmError, match="it is the working directory"):
        LocalLauncher(config).prepare()
    # Assert
    assert run_dir.resolve() == work and (work / "hosts.json").is_file()
    _assert_untouched(work)


def test_a_run_directory_swarm_made_is_kept_aside(tmp_path: Path) -> None:
    # Prepare: a first run in a folder swarm creates.
    config = _config(tmp_path, str(tmp_path / "runs" / "small" / "lineage"))
    LocalLauncher(config).prepare()
    GitLineageStore.open(config.lineage_dir, create=True).close()
    assert (config.run_dir / RUN_MARKER).is_file()
    # Execute: a second new run.
    second = LocalLauncher(config)
    second.prepare()
    # Assert: the first run was moved aside whole, the new one starts empty.
    assert second.archived is not None and (second.archived / "lineage" / "HEAD").is_file()
    assert not config.lineage_dir.exists() and (config.run_dir / RUN_MARKER).is_file()


def test_a_swarm_made_run_directory_with_a_persons_files_is_not_moved(tmp_path: Path) -> None:
    # Prepare: a first run in a folder swarm creates, then a person adds a file there.
    config = _config(tmp_path, str(tmp_path / "runs" / "small" / "lineage"))
    LocalLauncher(config).prepare()
    GitLineageStore.open(config.lineage_dir, create=True).close()
    (config.run_dir / "notes.txt").write_text("mine")
    before = sorted(p.name for p in config.run_dir.iterdir())
    # Execute: a second new run.
    with pytest.raises(SwarmError, match="notes.txt"):
        LocalLauncher(config).prepare()
    # Assert: nothing was moved.
    assert sorted(p.name for p in config.run_dir.iterdir()) == before
    assert (config.run_dir / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in config.run_dir.parent.iterdir()) == ["small"]


def test_swarm_run_with_lineage_under_home_leaves_home_alone(tmp_path: Path) -> None:
    # Prepare: HOME holds the user's files and an earlier run's lineage.
    home = tmp_path / "home"
    _plant(home)
    GitLineageStore.open(home / "lineage", create=True).close()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {**os.environ, "HOME": str(home)}
    # Execute: the real CLI, as a user would type it.
    proc = subprocess.run(
        [sys.executable, "-m", "swarm", "run", str(SMALL), "--set", "swarm.lineage=~/lineage",
         "--set", f"model.path={model}", "--set", f"transport.base_port={free_base_port()}"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    # Assert: one clear line, a non-zero exit, every file where it was.
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "it is the home directory" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_untouched(home)
    assert (home / "lineage" / "HEAD").is_file()


def test_a_run_directory_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    # Prepare: a file where the run directory's parent should be.
    (tmp_path / "file").write_text("mine\n")
    config = _config(tmp_path, str(tmp_path / "file" / "run" / "lineage"))
    # Execute / Assert
    with pytest.raises(SwarmError, match="cannot create the run directory .*Not a directory"):
        LocalLauncher(config).prepare()
    assert (tmp_path / "file").read_text() == "mine\n"


@pytest.mark.slow
def test_a_real_run_beside_user_files_moves_none_of_them(tmp_path: Path,
                                                         model_server: list[str]) -> None:
    # Prepare: swarm.lineage inside a folder of the user's files.
    from swarm.runtime.run import run_swarm

    data = tmp_path / "data"
    _plant(data)
    config = load_config(SMALL, [*model_server, "swarm.rounds=1",
                                 f"swarm.lineage={data / 'lineage'}",
                                 f"transport.base_port={free_base_port()}"])
    # Execute: a whole run, then a second new run in the same place.
    summary = run_swarm(config)
    with pytest.raises(SwarmError, match="swarm did not create it"):
        run_swarm(config)
    # Assert: the run landed in the lineage; every user file is where it was.
    assert summary is not None and [r["round"] for r in summary["history"]] == [0]
    assert (data / "lineage" / "HEAD").is_file()
    _assert_untouched(data)
    assert not (tmp_path / ".models").exists()  # nothing written above the user's folder
