"""Batch samplers that keep a batch inside one volume and give every slice to exactly one rank.

Lightning's automatic ``DistributedSampler`` pads the last ranks with repeated
slices and fastMRI's ``VolumeSampler`` pads too; both then need de-duplication
before per-volume metrics. Here validation / test volumes are dealt whole to
ranks (greedy by slice count, so the work stays balanced), nothing is
repeated, and a batch never mixes volumes, so volumes of different widths or
coil counts batch safely. Hand-written: neither torch nor fastMRI has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def assign_volumes(sizes: Sequence[int], num_replicas: int) -> list[list[int]]:
    """Deal volumes (by slice count ``sizes``) to ``num_replicas`` ranks, largest first."""
    ranks: list[list[int]] = [[] for _ in range(num_replicas)]
    load = [0] * num_replicas
    for v in sorted(range(len(sizes)), key=lambda v: (-sizes[v], v)):
        r = min(range(num_replicas), key=lambda r: (load[r], r))
        ranks[r].append(v)
        load[r] += sizes[v]
    return [sorted(vols) for vols in ranks]


class VolumeBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Consecutive slices of one volume per batch; each rank gets whole volumes, no repeats.

    Args:
        groups: item indices per volume (``SliceDataset.slices_by_volume()``).
        batch_size: slices per batch (the last batch of a volume may be smaller).
        num_replicas, rank: the DDP world; defaults to a single process.
    """

    def __init__(
        self, groups: Sequence[Sequence[int]], batch_size: int, num_replicas: int = 1, rank: int = 0
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside a world of {num_replicas}")
        mine = assign_volumes([len(g) for g in groups], num_replicas)[rank]
        self.batches = [
            list(groups[v][i : i + batch_size])
            for v in mine
            for i in range(0, len(groups[v]), batch_size)
        ]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
