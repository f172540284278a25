"""Fitness of params.txt: how close its packings come to the fewest bins (1.0 is optimal).

Each item goes to the open bin of highest score, where
``score = w_fill * fill + w_room * room + w_new * newness`` (fill: the bin's load
after the item; room: what is left of it; newness: 1 for the newest bin); a new
bin opens when that score is below ``threshold``; ``sort_desc = 1`` packs the
largest items first; a parameter missing from the file is 0. 30 seeded instances of 40 items; prints one JSON line
``{"status", "fitness", "detail"}``.
"""
import json
import math
import random

NAMES = {"w_fill", "w_room", "w_new", "threshold", "sort_desc"}


def read_params(path: str) -> dict[str, float]:
    params: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in NAMES:
            raise ValueError(f"line {n}: expected one of {sorted(NAMES)} = number")
        params[name] = float(value)
    return {name: params.get(name, 0.0) for name in NAMES}  # a missing one is 0; the last wins


def pack(items: list[float], p: dict[str, float]) -> int:
    bins: list[float] = []
    order = sorted(items, reverse=True) if p["sort_desc"] >= 0.5 else items
    for item in order:
        best, best_score = None, -math.inf
        for i, load in enumerate(bins):
            if load + item <= 1.0 + 1e-9:
                fill = load + item
                score = (p["w_fill"] * fill + p["w_room"] * (1.0 - fill)
                         + p["w_new"] * (1.0 if i == len(bins) - 1 else 0.0))
                if score > best_score:
                    best, best_score = i, score
        if best is None or best_score < p["threshold"]:
            bins.append(item)
        else:
            bins[best] += item
    return len(bins)


def main() -> None:
    try:
        params = read_params("params.txt")
    except (OSError, ValueError) as exc:
        print(json.dumps({"status": "failed", "fitness": None, "detail": str(exc)}))
        return
    rng = random.Random(1234)
    ratios = []
    for _ in range(30):
        items = [round(rng.uniform(0.05, 0.7), 3) for _ in range(40)]
        ratios.append(math.ceil(sum(items)) / pack(items, params))
    fitness = sum(ratios) / len(ratios)
    print(json.dumps({"status": "ok", "fitness": round(fitness, 6),
                      "detail": f"{len(ratios)} instances; lower bound / bins used"}))


if __name__ == "__main__":
    main()
