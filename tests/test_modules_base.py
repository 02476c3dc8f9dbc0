"""The shared LightningModule: non-finite losses, FFTs in float32 under autocast."""

from __future__ import annotations

import pytest
import torch

from kspace_mim.data.masks import RandomPatchMask
from kspace_mim.data.mri_data import SliceDataset
from kspace_mim.data.transforms import KspaceTransform, collate_slices, prepare_batch
from kspace_mim.modules.reconstruction import ReconstructionModule, system_of


@pytest.fixture
def batch(data_root):
    transform = KspaceTransform(RandomPatchMask(0.6, 4), 32)
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", transform)
    return prepare_batch(collate_slices([ds[0], ds[1]]))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return system_of("swin", 4, (32, 32), net={"size": "tiny"})


def test_nonfinite_loss_stops_naming_the_batch(model, batch):
    # The network diverged: every prediction NaN.
    model.net.forward = lambda x, mask: torch.full_like(x, float("nan"))
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite loss .* file1001000.h5 slice 0, "
        r"file1001000.h5 slice 1.*on_nonfinite=skip",
    ):
        model.training_step(batch, 0)
    model.on_nonfinite = "skip"
    assert model.training_step(batch, 0) is None  # Lightning skips the optimizer step


def test_bf16_autocast_keeps_ffts_in_float32(model, batch):
    reference = model.reconstruct(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.reconstruct(batch)
    assert out.kspace.dtype == torch.complex64 and out.image.dtype == torch.float32
    # acquired samples to float32 precision (data consistency in float32: bf16 would be
    # off by 1e-2; soft data consistency at its initial weight 1 rounds, hard is exact)
    acquired = batch.mask.expand_as(out.kspace)
    torch.testing.assert_close(out.kspace[acquired], batch.masked_kspace[acquired])
    torch.testing.assert_close(
        out.image, reference.image, rtol=0.05, atol=0.05 * float(reference.image.max())
    )


def test_a_nan_validation_metric_names_the_volume_and_stops(
    data_root, tmp_path, small_overrides, monkeypatch
):
    """One volume's NaN would freeze best-checkpoint selection at the first checkpoint
    while metrics.json said "selected on validation": the run stops, naming it."""
    from kspace_mim.config import compose
    from kspace_mim.modules.reconstruction import NonFiniteMetricError
    from kspace_mim.train import run

    folder = data_root / "multicoil_val"
    victim = sorted(p.name for p in folder.glob("*.h5"))[1]
    reconstruct = ReconstructionModule.reconstruct

    def nan_for_one_volume(self, batch):
        out = reconstruct(self, batch)
        if not self.training:
            hit = torch.tensor([f == victim for f in batch.fname]).reshape(-1, 1, 1)
            out = out._replace(image=torch.where(hit, torch.nan, out.image))
        return out

    monkeypatch.setattr(ReconstructionModule, "reconstruct", nan_for_one_volume)
    cfg = compose(small_overrides(folder, "trainer.num_sanity_val_steps=0"))
    with pytest.raises(NonFiniteMetricError, match=f"val metrics are NaN at step 3 .*{victim}"):
        run(cfg, tmp_path)
