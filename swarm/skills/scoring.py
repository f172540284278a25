"""Scoring answers against examples: exact match, accuracy overall and per skill."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from swarm.wire.messages import Example

__all__ = ["exact_match", "evaluate", "evaluate_by_skill"]


def exact_match(pred: str, target: str) -> bool:
    """Whether a generated answer equals the reference, ignoring surrounding and repeated spaces."""
    return pred.split() == target.split()


def evaluate(
    generate_fn: Callable[[list[str]], list[str]], examples: Sequence[Example]
) -> float:
    """Exact-match accuracy of ``generate_fn`` (prompts -> completions) on ``examples``.

    Returns 0.0 for no examples.
    """
    if not examples:
        return 0.0
    preds = generate_fn([ex.prompt for ex in examples])
    if len(preds) != len(examples):
        raise ValueError(f"generate_fn returned {len(preds)} answers for {len(examples)} prompts")
    hits = sum(exact_match(p, ex.completion) for p, ex in zip(preds, examples, strict=True))
    return hits / len(examples)


def evaluate_by_skill(
    generate_fn: Callable[[list[str]], list[str]], examples: Sequence[Example]
) -> dict[str, float]:
    """Exact-match accuracy per skill name."""
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.skill, []).append(ex)
    return {name: evaluate(generate_fn, group) for name, group in sorted(groups.items())}
