"""The config's ``protocol`` section and the settings of the built-in protocols.

``protocol.name`` names a registered protocol (``swarm.protocols.registry``);
the section's keys other than ``name`` are that protocol's settings, validated
against its ``settings_schema`` and held in ``ProtocolSection.settings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from swarm.settings import Name, Settings

__all__ = ["ExchangeSettings", "MergeMethod", "ProtocolSection"]


#: peft's merges (``swarm.serving.merging.PEFT_METHODS``) and the robust rules
#: over adapter updates (``ROBUST_RULES``), as the config may name them.
MergeMethod = Literal[
    "linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
    "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd",
    "mean", "median", "trimmed_mean", "clipped_mean",
]


class ExchangeSettings(Settings, frozen=True):
    """How knowledge flows inside a pair (``knexa``; ``local`` takes them and pairs no one).

    ``exchange``: ``merge`` (the teacher's adapter into the student's by
    ``merge_method``: ``student + merge_weight * teacher`` for peft's methods)
    or ``distill`` (fine-tune on the teacher's answers to ``distill_examples``
    fresh prompts of its skills, mixed with a ``replay`` share of the student's
    own data; ``screen``: only the skills where the teacher, measured on the
    student's own held-out set, beats the student). ``teachers``: teachers per
    student and round (more than one: each merged lesson is scored alone, the
    ``validate``d ones are combined by ``aggregate``, a robust rule or a peft
    merge, over the student and its teachers; distilled lessons are one
    training). ``validate``: keep a lesson only if the student's held-out
    score does not drop (``accept: better``: only if it rises).
    ``final_merge``: in the last round every agent takes one merge of all
    agents' adapters ("a single merging"), by that method (``none``: no
    global merge).
    """

    exchange: Literal["merge", "distill"] = "merge"
    # merge: student + merge_weight * teacher (task arithmetic), SVD back to rank r
    merge_weight: Annotated[float, msgspec.Meta(gt=0.0, le=2.0)] = 1.0
    merge_method: MergeMethod = "svd"
    density: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5  # ties / dare / magnitude
    distill_examples: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    replay: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    screen: bool = True
    teachers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    aggregate: MergeMethod = "mean"
    validate: bool = True
    accept: Literal["not_worse", "better"] = "not_worse"
    final_merge: Literal["none"] | MergeMethod = "none"


class ProtocolSection(Settings, frozen=True):
    """The round logic and how knowledge flows inside a pair."""

    name: Name = "knexa"
    #: The protocol's own settings: an instance of its ``settings_schema`` (or ``None``).
    settings: Any = msgspec.field(default_factory=ExchangeSettings)
