"""Fitness of binpack.py: MINUS the mean number of bins its ``pack`` uses (swarm keeps the higher).

50 seeded instances of 60 items (uniform in [0.1, 0.7], 3 decimals) into bins of
capacity 1.0. Every packing is checked: each item packed exactly once and unchanged
(the multisets compared) and no bin over capacity; an invalid packing, an exception,
a crash or more than 10 s is a failed evaluation. Prints one JSON line
``{"status": "ok", "fitness": -mean_bins, "detail": ...}`` (else ``{"status": "failed" |
"timeout", "fitness": null, "detail": ...}``): the command evaluator reads its last line.

The evolved code never runs in this process. ``python score.py`` (this process) drops its
own folder from ``sys.path`` (it imports nothing the evolved code could write there), makes
itself non-dumpable (a process of the same user may then neither ptrace it nor open its
``/proc/PID/fd``), and runs ``python score.py --pack`` as a child, whose stdin is the
instances and whose stdout and stderr are pipes this process reads; the child imports
binpack.py and writes the packings as JSON. So the evolved code cannot print a score of its
own: it holds no descriptor of this process's stdout, and this process prints the last line
itself, then leaves with ``os._exit`` (no exit handlers). What remains: the child may kill or
stop this process (no score: failed or timeout, never selected), and the instances are
no secret (it gets them on stdin; a packing that is valid is valid however it was found).
"""

import ctypes
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter

INSTANCES, ITEMS, LOW, HIGH, SEED = 50, 60, 0.1, 0.7, 2024
CAPACITY, EPSILON, PACK_S = 1.0, 1e-9, 10.0
PR_SET_DUMPABLE = 4
HERE = os.path.dirname(os.path.abspath(__file__))


def instances() -> list[list[float]]:
    rng = random.Random(SEED)
    return [[round(rng.uniform(LOW, HIGH), 3) for _ in range(ITEMS)] for _ in range(INSTANCES)]


def child() -> None:
    """``score.py --pack``: the instances on stdin, their packings on stdout (the evolved code)."""
    from binpack import pack

    json.dump([pack(list(items), CAPACITY) for items in json.load(sys.stdin)], sys.stdout)


def check(items: list[float], bins: object) -> str:
    """Why ``bins`` is no packing of ``items``, or ''."""
    if not isinstance(bins, list) or not all(isinstance(b, list) for b in bins):
        return "pack did not return a list of bins (lists)"
    packed = [x for b in bins for x in b]
    if not all(isinstance(x, float) for x in packed):
        return "a bin holds something other than the items"
    if Counter(packed) != Counter(items):
        lost, extra = Counter(items) - Counter(packed), Counter(packed) - Counter(items)
        return f"items lost {sorted(lost.elements())[:5]}, added {sorted(extra.elements())[:5]}"
    over = [sum(b) for b in bins if sum(b) > CAPACITY + EPSILON]
    return f"a bin holds {over[0]:.4f} > capacity {CAPACITY}" if over else ""


def score(problems: list[list[float]]) -> dict[str, object]:
    """Run the child on ``problems`` and score what it packed."""
    try:
        run = subprocess.run([sys.executable, os.path.join(HERE, "score.py"), "--pack"],
                             input=json.dumps(problems), capture_output=True, text=True,
                             timeout=PACK_S, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "fitness": None, "detail": f"pack took over {PACK_S} s"}
    if run.returncode != 0:
        return {"status": "failed", "fitness": None,
                "detail": f"pack failed (exit {run.returncode}): {run.stderr[-800:]}"}
    try:
        packings = json.loads(run.stdout)
    except ValueError:
        return {"status": "failed", "fitness": None, "detail": "pack's bins are not JSON"}
    if not isinstance(packings, list) or len(packings) != len(problems):
        return {"status": "failed", "fitness": None, "detail": "not one packing per instance"}
    for n, (items, bins) in enumerate(zip(problems, packings, strict=True)):
        why = check(items, bins)
        if why:
            return {"status": "failed", "fitness": None, "detail": f"instance {n}: {why}"}
    mean = sum(len(b) for b in packings) / len(packings)
    bound = sum(math.ceil(sum(items) - EPSILON) for items in problems) / len(problems)
    return {"status": "ok", "fitness": -round(mean, 6),
            "detail": f"{len(problems)} instances of {ITEMS} items: {mean:.2f} bins on average "
                      f"(lower bound {bound:.2f}); fitness is minus the mean"}


def main() -> None:
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != HERE]
    try:
        sealed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (AttributeError, OSError):  # not Linux
        sealed = False
    if sealed:
        result = score(instances())
    else:
        result = {"status": "failed", "fitness": None,
                  "detail": "score.py cannot make itself non-dumpable (prctl: Linux only)"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:] == ["--pack"]:
        child()
    else:
        main()
