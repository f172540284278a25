"""The runtime: the processes of a swarm and what starts them.

The ``Coordinator`` owns the round loop, the host registry (``Membership``),
the matchmaker and the profile builder; the ``Recorder`` writes each round to
the lineage; a ``Host`` holds agents and steps them; the launchers
(``LocalLauncher``: subprocesses, ``InlineLauncher``: coordinator and hosts in
the calling process) start, watch and stop them; ``run_swarm`` runs a whole
swarm and reports its progress as typed events (``swarm.runtime.events``),
printing nothing.
"""

from __future__ import annotations

from swarm.runtime.coordinator import Coordinator
from swarm.runtime.events import (
    Interrupted,
    Preparing,
    Progress,
    Reward,
    RoundFinished,
    RoundStarted,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSummary,
)
from swarm.runtime.host import Host
from swarm.runtime.inline_launcher import InlineLauncher
from swarm.runtime.local_launcher import LocalLauncher
from swarm.runtime.membership import Member, Membership
from swarm.runtime.recorder import Recorder
from swarm.runtime.run import ask_status, run_swarm

__all__ = [
    "Coordinator",
    "Host",
    "InlineLauncher",
    "Interrupted",
    "LocalLauncher",
    "Member",
    "Membership",
    "Preparing",
    "Progress",
    "Recorder",
    "Reward",
    "RoundFinished",
    "RoundStarted",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "RunSummary",
    "ask_status",
    "run_swarm",
]
