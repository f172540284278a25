"""The grouped CPU LoRA kernels against vLLM's own torch kernels, on random tensors.

The engine-level checks (8 adapters in one batch equal to each alone, base
requests mixed with adapters) are in ``test_serving.py`` and run through these
kernels on this machine; here each op is compared number by number.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from vllm.lora.ops import torch_ops

from swarm.serving.vllm_cpu_lora import grouped_expand, grouped_shrink, plan

SLOTS, RANK, IN, OUT = 6, 4, 32, 48


def _weights(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lora_a = torch.randn(SLOTS, 1, RANK, IN, generator=gen)
    lora_b = torch.randn(SLOTS, 1, OUT, RANK, generator=gen)
    return lora_a, lora_b


CASES = {
    "one adapter": [3] * 10,
    "balanced": [0, 1, 2, 3, 4, 5] * 4,
    "interleaved runs": [5, 5, 0, 0, 0, 2, 5, 1],
    "uneven (loop path)": [0] * 40 + [1, 2, 3, 4, 5],
    "one token": [2],
}


@pytest.mark.parametrize("indices", CASES.values(), ids=CASES.keys())
def test_shrink_and_expand_equal_vllm_torch_ops(indices: list[int]) -> None:
    idx = torch.tensor(indices)
    lora_a, lora_b = _weights(len(indices))
    x = torch.randn(len(indices), IN)
    p = plan(idx)
    assert p.padded == (len(set(indices)) * max(indices.count(i) for i in indices) <= 2 * len(indices))

    ours, theirs = torch.zeros(len(indices), RANK), torch.zeros(len(indices), RANK)
    grouped_shrink(ours, x, lora_a, 0.5, p)
    torch_ops.bgmv_shrink(x, lora_a, theirs, idx, 0.5)
    torch.testing.assert_close(ours, theirs)

    y0 = torch.randn(len(indices), OUT + 8)
    ours_y, theirs_y = y0.clone(), y0.clone()
    grouped_expand(ours_y, ours, lora_b, 4, OUT, True, p)
    torch_ops.bgmv_expand_slice(theirs, lora_b, theirs_y, idx, 4, OUT, True)
    torch.testing.assert_close(ours_y, theirs_y)
    assert not torch.equal(ours_y, y0)


def test_tokens_without_lora_get_nothing_added() -> None:
    # vLLM's torch ops index weights[-1] here, the last slot's adapter; ours add nothing.
    indices = [-1, 2, -1, 4, 4, -1]
    idx, base = torch.tensor(indices), torch.tensor(indices) < 0
    lora_a, lora_b = _weights(7)
    x, y0 = torch.randn(len(indices), IN), torch.randn(len(indices), OUT)
    p = plan(idx)
    buffer = torch.full((len(indices), RANK), float("nan"))
    grouped_shrink(buffer, x, lora_a, 1.0, p)
    y = y0.clone()
    grouped_expand(y, buffer, lora_b, 0, OUT, True, p)

    torch.testing.assert_close(y[base], y0[base])
    expected = y0[~base] + (x[~base].unsqueeze(1) @ lora_a[idx[~base], 0].transpose(1, 2)
                            @ lora_b[idx[~base], 0].transpose(1, 2)).squeeze(1)  # fmt: skip
    torch.testing.assert_close(y[~base], expected)
    only_base = torch.zeros(3, RANK)
    grouped_shrink(only_base, torch.randn(3, IN), lora_a, 1.0, plan(torch.tensor([-1, -1, -1])))
    assert not only_base.any()


def test_expand_without_add_overwrites_only_its_slice() -> None:
    idx = torch.tensor([1, 0, 1])
    _, lora_b = _weights(3)
    x, y = torch.randn(3, RANK), torch.randn(3, 2 * OUT)
    before = y.clone()
    grouped_expand(y, x, lora_b, OUT, OUT, False, plan(idx))
    torch.testing.assert_close(y[:, :OUT], before[:, :OUT])
    torch.testing.assert_close(y[:, OUT:], (x.unsqueeze(1) @ lora_b[idx, 0].transpose(1, 2)).squeeze(1))


def test_kernel_choice_env_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.errors import BackendError
    from swarm.serving import vllm_cpu_lora

    monkeypatch.setenv(vllm_cpu_lora.ENV, "fast")
    with pytest.raises(BackendError, match="SWARM_VLLM_LORA_KERNELS must be 'grouped' or 'vllm'"):
        vllm_cpu_lora.engine_uses_grouped()
    vllm_cpu_lora.install()  # as a vLLM plugin: logs, keeps vLLM's kernels, stops nothing
    assert not vllm_cpu_lora.active()
    monkeypatch.setenv(vllm_cpu_lora.ENV, "grouped")
    vllm_cpu_lora.install()
    assert vllm_cpu_lora.active() and vllm_cpu_lora.engine_uses_grouped()
    monkeypatch.setenv("VLLM_PLUGINS", "some_other_plugin")  # the engine would not load ours
    assert not vllm_cpu_lora.engine_uses_grouped()
    monkeypatch.setenv(vllm_cpu_lora.ENV, "vllm")
    monkeypatch.delenv("VLLM_PLUGINS")
    vllm_cpu_lora.install()
    assert not vllm_cpu_lora.active() and not vllm_cpu_lora.engine_uses_grouped()
    monkeypatch.setenv(vllm_cpu_lora.ENV, "grouped")
    vllm_cpu_lora.install()


class _TorchCalls(TorchFunctionMode):
    """Records the name of every torch function run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


_WORK = {"mm", "bmm", "matmul", "__matmul__", "einsum", "index_select", "index_copy_"}


def test_no_tokens_no_work() -> None:
    lora_a, lora_b = _weights(1)
    empty = plan(torch.zeros(0, dtype=torch.long))
    y, out = torch.zeros(0, RANK), torch.zeros(0, OUT)

    with _TorchCalls() as calls:
        grouped_shrink(y, torch.zeros(0, IN), lora_a, 0.5, empty)
        grouped_expand(out, y, lora_b, 0, OUT, True, empty)

    assert empty.slot_list == () and empty.width == 0 and not empty.has_base
    assert y.shape == (0, RANK) and out.shape == (0, OUT)
    assert calls.names and not _WORK & set(calls.names), calls.names  # no product or gather
    with _TorchCalls() as one_token:  # the recorder sees the work when there is some
        grouped_shrink(torch.zeros(1, RANK), torch.ones(1, IN), lora_a, 0.5, plan(torch.tensor([2])))
    assert _WORK & set(one_token.names)
