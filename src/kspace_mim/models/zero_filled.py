"""Zero-filling: the inverse FFT of the acquired samples; the floor of every table."""

from __future__ import annotations

from torch import nn

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.family import NetFacts, ReconOutput, kspace_output


class ZeroFilled(nn.Module):
    """No parameters, so the system validates it and never trains it."""

    trainable = False

    def __init__(self, facts: NetFacts | None = None):
        super().__init__()
        self.slices = facts.slices if facts is not None else 1

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        return kspace_output(batch, batch.masked_kspace, self.slices)
