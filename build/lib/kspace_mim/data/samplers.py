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


class GridBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffled training batches whose slices share one grid.

    Files that bring their own mask (undersampled, fastMRI's test layout) keep their own
    width, so that every acquired sample stays exact; their slices can only be batched
    with slices of the same width. Each epoch shuffles every group, cuts it into batches
    and shuffles the batches; under DDP every rank gets as many batches as the others
    (the same permutation everywhere, from ``seed`` and the epoch).

    Args:
        keys: one hashable per item (its grid); items with equal keys may share a batch.
        batch_size: slices per batch; a group's last, smaller batch is dropped when
            ``drop_last`` (unless it is the group's only one).
        seed: the shuffle's seed; ``set_epoch`` (called by Lightning) varies it.
    """

    def __init__(
        self,
        keys: Sequence,
        batch_size: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside a world of {num_replicas}")
        groups: dict = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self.groups = list(groups.values())
        self.batch_size = batch_size
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        batches = []
        for group in self.groups:
            order = [group[i] for i in torch.randperm(len(group), generator=gen).tolist()]
            cut = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            if self.drop_last and len(cut) > 1 and len(cut[-1]) < self.batch_size:
                cut.pop()
            batches += cut
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        per_rank = len(batches) // self.num_replicas
        return batches[self.rank :: self.num_replicas][:per_rank]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._all_batches())

    def __len__(self) -> int:
        return len(self._all_batches())
