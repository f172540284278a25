"""Bin packing: put every item into bins of a fixed capacity, using as few bins as you can.

``pack(items, capacity)`` returns the bins, each a list of items. Every item of
``items`` must be in exactly one bin, unchanged (the same float), and no bin may
hold more than ``capacity``. score.py runs it on seeded instances; the fewer bins
it uses on average, the fitter this file is.

This version is first fit in the given order: each item goes into the first bin
it fits in, else into a new bin.
"""

EPSILON = 1e-9  # slack for float sums


def fits(load: float, item: float, capacity: float) -> bool:
    """Whether ``item`` still fits into a bin that holds ``load``."""
    return load + item <= capacity + EPSILON


def first_fit(items: list[float], capacity: float) -> list[list[float]]:
    """Each item into the first open bin it fits in; a new bin when none has room."""
    bins: list[list[float]] = []
    loads: list[float] = []
    for item in items:
        for i, load in enumerate(loads):
            if fits(load, item, capacity):
                bins[i].append(item)
                loads[i] = load + item
                break
        else:
            bins.append([item])
            loads.append(item)
    return bins


def pack(items: list[float], capacity: float = 1.0) -> list[list[float]]:
    """The bins ``items`` are packed into, none over ``capacity``."""
    for item in items:
        if item > capacity + EPSILON:
            raise ValueError(f"an item of {item} cannot fit into a bin of {capacity}")
    order = list(items)
    return first_fit(order, capacity)
