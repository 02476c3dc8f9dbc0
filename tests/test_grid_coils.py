"""The file's own grid (data.grid=native), mixed-acceleration masks, any coil count and
padded coils that never give NaN."""

from __future__ import annotations

import json
import math

import hydra
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset as FastMRISliceDataset
from fastmri.data.subsample import RandomMaskFunc
from fastmri.data.transforms import VarNetDataTransform
from fastmri.models.varnet import SensitivityModel

from kspace_mim.config import ConfigError, compose
from kspace_mim.data.datamodule import FastMRIDataModule
from kspace_mim.data.masks import CartesianMask
from kspace_mim.data.synthesize import synthesize
from kspace_mim.data.transforms import collate_slices
from kspace_mim.models.coils import guard_empty_coils
from kspace_mim.train import build_datamodule, build_model, run


@pytest.fixture(scope="module")
def release_layout(tmp_path_factory):
    """Knee-sized files in the release layout: 640 rows (2x readout oversampling), widths
    368 and 372 with 2 padding columns each side, 320x320 targets; 2 coils, 1-2 slices."""
    root = tmp_path_factory.mktemp("release")
    kw = dict(coils=2, size=320, progress=False)
    synthesize(root / "train", "multicoil", "train", volumes=3, slices=1, seed=3, **kw)
    synthesize(root / "val", "multicoil", "val", volumes=2, slices=2, seed=3, **kw)
    synthesize(root / "test", "multicoil", "test", volumes=2, slices=1, seed=3, **kw)
    return root


def native_datamodule(root, mask=None, **kw) -> FastMRIDataModule:
    mask = mask or CartesianMask(RandomMaskFunc([0.08, 0.04], [4, 8]))
    dm = FastMRIDataModule(
        root / "train", root / "val", root / "test", mask=mask, grid="native", batch_size=1, **kw
    )
    dm.setup()
    return dm


def test_release_widths_are_what_the_native_grid_batches(release_layout):
    """Training, validation and test batches carry the file's own width (368 / 372), the
    2x readout oversampling and the protocol's centre columns; padding columns are never
    sampled; only the image is cropped to 320x320."""
    dm = native_datamodule(release_layout)
    widths = {v.shape[-1] for v in dm.datasets["train"].volumes + dm.datasets["val"].volumes}
    assert widths == {368, 372}  # both release widths are among the files
    for stage, loader in (
        ("train", dm.train_dataloader()),
        ("val", dm.val_dataloader()),
        ("test", dm.test_dataloader()),
    ):
        for raw in loader:
            batch = dm.on_after_batch_transfer(raw)
            name = batch.fname[0]
            volume = next(v for v in dm.datasets[stage].volumes if v.path.name == name)
            rows, cols = volume.shape[-2:]
            assert batch.masked_kspace.shape[-2:] == (rows, cols) == (640, cols), stage
            if stage != "test":  # test files hold no target
                assert batch.target.shape[-2:] == (320, 320)
            pad_l, pad_r = volume.metadata["padding_left"], volume.metadata["padding_right"]
            mask = batch.mask[0, 0, 0]
            assert not mask[:pad_l].any() and not mask[pad_r:].any(), stage
            num_low = int(batch.num_low_frequencies[0])
            if stage != "test":  # the protocol's fractions of the file's own width
                assert num_low in (round(cols * 0.08), round(cols * 0.04)), (stage, num_low)
            centre = mask[cols // 2 - num_low // 2 : cols // 2 - num_low // 2 + num_low]
            assert num_low > 0 and centre.all(), stage


def test_native_grid_equals_fastmri_varnet_transform(release_layout):
    """Validation on the native grid is fastMRI's VarNetDataTransform (seeded by file
    name, padding excluded): the same mask and the same masked k-space, in original units."""
    mask_func = RandomMaskFunc([0.08, 0.04], [4, 8])
    dm = native_datamodule(release_layout, CartesianMask(mask_func))
    reference = FastMRISliceDataset(
        release_layout / "val", "multicoil", VarNetDataTransform(mask_func, use_seed=True)
    )
    ours = dm.datasets["val"]
    assert len(ours) == len(reference)
    for i in range(len(ours)):
        batch = dm.on_after_batch_transfer(collate_slices([ours[i]]))
        ref = reference[i]
        assert batch.fname[0] == ref.fname and int(batch.slice_num[0]) == ref.slice_num
        assert torch.equal(batch.mask[0, 0, 0], ref.mask.reshape(-1).bool())
        assert int(batch.num_low_frequencies[0]) == ref.num_low_frequencies
        original = batch.masked_kspace[0] * batch.scale[0]
        expected = torch.view_as_complex(ref.masked_kspace)
        torch.testing.assert_close(original, expected, rtol=1e-5, atol=1e-6 * expected.abs().max())
        torch.testing.assert_close(batch.target[0], ref.target)


def test_square_grid_crops_both_axes(release_layout):
    dm = FastMRIDataModule(
        release_layout / "train",
        release_layout / "val",
        mask=CartesianMask(RandomMaskFunc([0.08], [4])),
        crop_size=320,
    )
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())))
    assert batch.masked_kspace.shape[-2:] == (320, 320)
    assert dm.facts().img_size == (320, 320)
    assert native_datamodule(release_layout).facts().img_size == (640, 372)
    with pytest.raises(ValueError, match="data.grid must be one of"):
        FastMRIDataModule(release_layout / "train", grid="round")


@pytest.mark.parametrize(
    "preset, func", [("random4x8x", "Random"), ("equispaced4x8x", "Equispaced")]
)
def test_mixed_acceleration_presets(preset, func):
    """fastMRI / PromptMR's training masks: 4x with centre 0.08 or 8x with 0.04 per slice."""
    mask = hydra.utils.instantiate(compose([f"mask={preset}"]).mask)
    assert type(mask.mask_func).__name__.startswith(func)
    drawn = {mask((64, 100), seed)[1:] for seed in range(40)}
    centres = {num_low for num_low, _ in drawn}
    assert centres == {8, 4}  # round(100 * 0.08), round(100 * 0.04)
    fours = [acc for num_low, acc in drawn if num_low == 8]
    eights = [acc for num_low, acc in drawn if num_low == 4]
    assert 3 < np.mean(fours) < 5 and 6 < np.mean(eights) < 10


def test_split_validates_with_the_protocol_masks(data_root, tmp_path):
    split = tmp_path / "split.json"
    val = sorted(p.name for p in (data_root / "multicoil_val").glob("*.h5"))
    split.write_text(json.dumps({"val_list": val, "test_list": []}))
    dm = FastMRIDataModule(
        data_root / "multicoil_train",
        data_root / "multicoil_val",
        data_root / "multicoil_test",
        mask=CartesianMask(RandomMaskFunc([0.08], [4])),
        split_file=str(split),
    )
    dm.setup("fit")
    protocol = dm.datasets["val"].transform.mask_func.mask_func
    assert list(protocol.center_fractions) == [0.08, 0.04] and list(protocol.accelerations) == [
        4,
        8,
    ]
    assert type(protocol).__name__ == "RandomMaskFunc"
    assert list(dm.datasets["train"].transform.mask_func.mask_func.accelerations) == [4]


def test_empty_coils_get_zero_maps_and_real_coils_fastmri_s():
    """fastMRI's SensitivityModel divides an all-zero coil by its zero std (NaN); guarded,
    the zero coil gets a zero map and every real coil fastMRI's own map, bit for bit."""
    torch.manual_seed(0)
    reference = SensitivityModel(4, 2)
    guarded = SensitivityModel(4, 2)
    guarded.load_state_dict(reference.state_dict())
    guard_empty_coils(guarded)
    kspace = torch.randn(1, 3, 32, 24, 2)
    mask = torch.zeros(1, 1, 1, 24, 1, dtype=torch.bool)
    mask[..., 8:16, :] = True
    kspace = kspace * mask
    with torch.no_grad():
        assert torch.equal(guarded(kspace, mask, 8), reference(kspace, mask, 8))
        padded = torch.cat([kspace, torch.zeros(1, 2, 32, 24, 2)], dim=1)
        assert torch.isnan(reference(padded, mask, 8)).any()  # what the guard is for
        maps = guarded(padded, mask, 8)
    assert torch.isfinite(maps).all()
    assert torch.equal(maps[:, 3:], torch.zeros_like(maps[:, 3:]))
    torch.testing.assert_close(maps[:, :3], reference(kspace, mask, 8).detach())


@pytest.mark.parametrize(
    "family, extra",
    [
        ("varnet", ["model.num_cascades=2", "model.pools=2", "model.sens_pools=2"]),
        ("unrolled", ["model.cascades=2", "model.pools=2", "model.sens_pools=2"]),
    ],
)
def test_coils_padded_to_a_fixed_count_train_without_nan(family, extra, data_root, tmp_path):
    """4- and 6-coil volumes zero-padded to 8 virtual coils: every family that estimates
    coil maps trains and validates with finite numbers."""
    folder = data_root / "mixed_coils"
    cfg = compose(
        [
            f"model={family}",
            f"data.train_path={folder}",
            f"data.val_path={folder}",
            "data.virtual_coils=8",
            "data.num_workers=0",
            "model.size=tiny",
            "trainer.max_steps=2",
            *extra,
        ]
    )
    metrics = run(cfg, tmp_path)
    assert metrics["num_volumes"] == 3 and math.isfinite(metrics["ssim"]) and metrics["ssim"] > 0


def test_any_coil_count_without_compression(data_root, tmp_path):
    """virtual_coils=null on 4- and 6-coil volumes: VarNet trains with each volume's own
    count (batches of one count); a family built for one count says what to set."""
    folder = data_root / "mixed_coils"
    base = [
        f"data.train_path={folder}",
        f"data.val_path={folder}",
        "data.num_workers=0",
        "data.batch_size=2",
        "model.size=tiny",
        "trainer.max_steps=3",
    ]
    cfg = compose(["model=varnet", "model.num_cascades=2", "model.pools=2", *base])
    datamodule = build_datamodule(cfg)
    assert datamodule.facts().coil_counts == (4, 6)
    datamodule.setup("fit")
    for raw in datamodule.train_dataloader():
        batch = datamodule.on_after_batch_transfer(raw)
        assert batch.masked_kspace.shape[1] in (4, 6)  # one count per batch, never padded
    metrics = run(cfg, tmp_path)
    assert metrics["num_volumes"] == 3 and math.isfinite(metrics["ssim"])
    # SimMIM through coil maps (its default) takes any count; on coils as channels it is
    # built for one count and says what to set.
    swin = compose(["model=swin", "data=tiny", *base])
    assert build_model(swin, build_datamodule(swin)).varying_coils
    swin = compose(["model=swin", "data=tiny", "model.coils=channels", *base])
    with pytest.raises(ConfigError, match=r"4, 6 coils .* set data.virtual_coils"):
        build_model(swin, build_datamodule(swin))
