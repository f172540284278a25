"""Skills: the data agents learn and are scored on.

A skill is a registered, seeded generator of ``Example``s (``registry``, open
to the entry-point group ``swarm.skills``); four are built in (``procedural``:
reverse, sort, add, count); a config may add its own from JSONL files, finite
pools rather than generators (``files``, its section ``settings``);
``datasets`` draws mixtures and shards from them and ``scoring`` scores
answers by exact match. Importing this package registers the built-ins.
"""

from swarm.skills.datasets import (
    make_dataset,
    split_by_skill,
    split_dirichlet,
    split_iid,
    train_test_split,
)
from swarm.skills.files import FileSkill, deal, heldout_quota, read_skill_file, slot_counts
from swarm.skills.procedural import BUILTIN_SKILLS, LETTERS
from swarm.skills.registry import SKILLS, Skill, as_skill, get_skill, register_skill, skill_names
from swarm.skills.scoring import evaluate, evaluate_by_skill, exact_match
from swarm.skills.settings import SkillFileSection
from swarm.wire.messages import Example

__all__ = [
    "Example",
    "Skill",
    "SKILLS",
    "as_skill",
    "register_skill",
    "get_skill",
    "skill_names",
    "BUILTIN_SKILLS",
    "LETTERS",
    "FileSkill",
    "SkillFileSection",
    "read_skill_file",
    "deal",
    "slot_counts",
    "heldout_quota",
    "make_dataset",
    "train_test_split",
    "split_iid",
    "split_by_skill",
    "split_dirichlet",
    "exact_match",
    "evaluate",
    "evaluate_by_skill",
]
