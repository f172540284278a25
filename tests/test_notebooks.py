"""The notebooks run top to bottom on the CPU (nbclient), against the session's model server."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import free_base_port

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str, env: dict[str, str], workdir: Path) -> nbformat.NotebookNode:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        NotebookClient(book, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return book


def _outputs(book: nbformat.NotebookNode) -> str:
    texts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def test_quickstart_then_lineage_notebooks(tmp_path: Path, model_server: list[str]) -> None:
    lineage = tmp_path / "qs" / "lineage"
    overrides = [*model_server, "swarm.rounds=2", f"swarm.lineage={lineage}",
                 f"transport.base_port={free_base_port()}", "agents.0.count=1",
                 "agents.1.count=1", "agents.2.count=1", "agents.3.count=1"]
    env = {"SWARM_SET": ";".join(overrides), "SWARM_LINEAGE": str(lineage)}
    (tmp_path / "configs").symlink_to(NOTEBOOKS.parent / "configs")

    quick = _execute("quickstart.ipynb", env, tmp_path)
    reader = _execute("lineage.ipynb", env, tmp_path)

    assert "round 1: mean" in _outputs(quick)
    assert (tmp_path / "phylogeny.png").stat().st_size > 10_000
    assert "commits," in _outputs(reader)


def test_custom_role_notebook(tmp_path: Path, model_server: list[str]) -> None:
    overrides = [*model_server, f"swarm.lineage={tmp_path / 'cr' / 'lineage'}",
                 f"transport.base_port={free_base_port()}", "agents.2.count=1", "agents.3.count=1"]
    (tmp_path / "configs").symlink_to(NOTEBOOKS.parent / "configs")

    book = _execute("custom_role.ipynb", {"SWARM_SET": ";".join(overrides)}, tmp_path)

    assert "cautious" in _outputs(book)
    assert (tmp_path / "cr" / "lineage" / "HEAD").exists()


def test_chat_notebook_talks_to_smollm2_through_the_model_server(tmp_path: Path, smollm2: Path) -> None:
    overrides = [f"swarm.lineage={tmp_path / 'chat' / 'lineage'}",
                 f"transport.base_port={free_base_port()}"]
    (tmp_path / "configs").symlink_to(NOTEBOOKS.parent / "configs")
    out = _outputs(_execute("chat.ipynb", {"SWARM_SET": ";".join(overrides)}, tmp_path))
    assert "Paris" in out  # "The capital of France is Paris."
    assert "City(name=" in out


def test_agents_notebook_runs_a_custom_llm_role_that_asks_its_peers(
        tmp_path: Path, model_server: list[str]) -> None:
    overrides = [*model_server, f"swarm.lineage={tmp_path / 'ag' / 'lineage'}",
                 f"transport.base_port={free_base_port()}"]
    (tmp_path / "configs").symlink_to(NOTEBOOKS.parent / "configs")

    out = _outputs(_execute("agents.ipynb", {"SWARM_SET": ";".join(overrides)}, tmp_path))

    assert "agent messages per round: [8, 8]" in out  # 4 asks and 4 answers a round
    assert "CuriousQuestion" in out and "CuriousAnswer" in out
    assert "goal learn" in out and "subgoal" in out
    assert (tmp_path / "kg.png").stat().st_size > 5_000


def test_evogit_notebook_evolves_an_artifact_and_draws_its_phylogeny(
        tmp_path: Path, model_server: list[str]) -> None:
    overrides = [*model_server, f"swarm.lineage={tmp_path / 'evo' / 'lineage'}",
                 f"transport.base_port={free_base_port()}"]
    (tmp_path / "configs").symlink_to(NOTEBOOKS.parent / "configs")

    out = _outputs(_execute("evogit.ipynb", {"SWARM_SET": ";".join(overrides)}, tmp_path))

    assert "best fitness per round:" in out and "versions, kinds:" in out
    assert "'seed'" in out and "'mutate'" in out
    assert "diff --git a/artifacts/packing/params.txt" in out or "fitness 0.3925 (seed" in out
    assert (tmp_path / "packing-phylogeny.png").stat().st_size > 5_000
