"""Affine augmentation of the coil images (MRAugment's kind): exact geometry, k-space and
target from the same images, a strength schedule that reaches loader workers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from kspace_mim.callbacks import AugmentationSchedule
from kspace_mim.config import compose
from kspace_mim.data.augment import Augmentation, affine_transform
from kspace_mim.data.masks import NoMask
from kspace_mim.data.mri_data import SliceDataset
from kspace_mim.data.transforms import KspaceTransform, prepare_slice
from kspace_mim.fingerprint import fingerprint
from kspace_mim.physics import kspace_to_image, to_original_units


def coil_images(seed: int = 0, shape: tuple[int, ...] = (3, 16, 16)) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(seed))


def test_affine_geometry_is_exact_on_the_pixel_grid():
    """No transform returns the images; a quarter turn is rot90; whole-pixel shifts are
    rolls (inside the field of view); every coil is moved alike (the map is linear)."""
    x = coil_images()
    torch.testing.assert_close(affine_transform(x), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        affine_transform(x, rotation=math.pi / 2), torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0
    )
    shifted = affine_transform(x, shift_x=2 / 16, shift_y=-3 / 16)
    rolled = torch.roll(x, (-3, 2), (-2, -1))
    torch.testing.assert_close(shifted[:, 3:-3, 3:-3], rolled[:, 3:-3, 3:-3], atol=1e-5, rtol=0)
    params = dict(rotation=0.2, zoom=1.1, shear_x=0.05, shear_y=-0.03, shift_x=0.04)
    whole = affine_transform(x, **params)
    for c in range(x.shape[0]):
        torch.testing.assert_close(whole[c], affine_transform(x[c : c + 1], **params)[0])
    torch.testing.assert_close(affine_transform(2j * x, **params), 2j * whole, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(whole, x, atol=1e-2)


def test_zoom_magnifies_about_the_centre():
    """A centred square grows with zoom > 1 (the map is about the image centre)."""
    x = torch.zeros(1, 32, 32, dtype=torch.complex64)
    x[:, 12:20, 12:20] = 1
    big = affine_transform(x, zoom=1.5).abs()
    assert float(big.sum()) == pytest.approx(float(x.abs().sum()) * 1.5**2, rel=0.1)
    torch.testing.assert_close(big, big.flip(-1).flip(-2), atol=1e-5, rtol=0)


class QuarterTurn(Augmentation):
    """An augmentation whose only draw is a quarter turn (exact on the grid)."""

    def draw_affine(self):
        return (math.pi / 2, 1.0, 0.0, 0.0, 0.0, 0.0)


def test_augmented_kspace_and_target_come_from_the_same_images(data_root):
    """Through the data pipeline: the target is the quarter-turned original target, and
    it is the image of the sample's own k-space (so k-space and target agree)."""
    folder = data_root / "multicoil_val"
    plain = SliceDataset(folder, "multicoil", KspaceTransform(NoMask(), 32))
    turned = SliceDataset(
        folder,
        "multicoil",
        KspaceTransform(
            NoMask(),
            32,
            augmentation=QuarterTurn(affine_prob=1.0, rotation_deg=90.0),
            deterministic=False,
        ),
    )
    a = prepare_slice(plain[0], None, False)
    b = prepare_slice(turned[0], None, False)
    scale = float(a.target.max())
    torch.testing.assert_close(
        b.target, torch.rot90(a.target, -1, (-2, -1)), rtol=1e-4, atol=1e-4 * scale
    )
    kspace = to_original_units(b.masked_kspace[None], b.scale[None], b.offset[None])
    image = kspace_to_image(kspace, tuple(b.crop_size.tolist()))[0]
    torch.testing.assert_close(image, b.target, rtol=1e-4, atol=1e-5 * scale)


def test_the_exponential_schedule_grows_from_nothing_to_affine_prob():
    aug = Augmentation(affine_prob=0.6, rotation_deg=10.0, schedule="exp")
    probabilities = []
    for t in (0.0, 0.1, 0.5, 1.0):
        aug.progress = t
        probabilities.append(aug.probability())
    assert probabilities[0] == 0 and probabilities[-1] == pytest.approx(0.6)
    assert probabilities == sorted(probabilities) and len(set(probabilities)) == 4
    aug.progress = 0.0
    x = coil_images(1)
    assert all(aug.draw_affine() is None for _ in range(50))
    torch.testing.assert_close(aug(x, (16, 16)), x)  # nothing drawn: the images unchanged
    constant = Augmentation(affine_prob=0.6, rotation_deg=10.0)
    constant.progress = 0.0
    assert constant.probability() == pytest.approx(0.6)
    torch.manual_seed(0)
    drawn = sum(constant.draw_affine() is not None for _ in range(400)) / 400
    assert drawn == pytest.approx(0.6, abs=0.08)


class Progress(Dataset):
    def __init__(self, aug: Augmentation):
        self.aug = aug

    def __len__(self) -> int:
        return 1000

    def __getitem__(self, i: int) -> float:
        return self.aug.progress


def test_progress_reaches_persistent_loader_workers():
    """Loader workers started before the update read the training process's value."""
    aug = Augmentation(affine_prob=0.5, rotation_deg=5.0, schedule="exp")
    aug.progress = 0.0
    loader = DataLoader(Progress(aug), num_workers=1, persistent_workers=True, batch_size=1)
    batches = iter(loader)
    assert float(next(batches)) == 0.0
    aug.progress = 0.75
    seen = [float(next(batches)) for _ in range(8)]  # past what the worker prefetched
    assert seen[-1] == 0.75


def test_the_schedule_callback_reports_the_fraction_of_steps_done():
    aug = Augmentation(affine_prob=0.5, rotation_deg=5.0, schedule="exp")
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(augmentation=aug), max_steps=200, global_step=50
    )
    AugmentationSchedule().on_train_batch_start(trainer, None, None, 0)
    assert aug.progress == 0.25
    by_epochs = SimpleNamespace(
        datamodule=SimpleNamespace(augmentation=aug),
        max_steps=-1,
        max_epochs=4,
        current_epoch=1,
        num_training_batches=10,
        global_step=15,
    )
    AugmentationSchedule().on_train_batch_start(by_epochs, None, None, 5)
    assert aug.progress == pytest.approx(1.5 / 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"affine_prob": 1.5}, "affine_prob"),
        ({"rotation_deg": -1.0}, "rotation_deg"),
        ({"scaling": 2.0}, "scaling"),
        ({"translation": 0.9}, "translation"),
        ({"schedule": "linear"}, "schedule"),
        ({"schedule_c": 0.0}, "schedule_c"),
    ],
)
def test_bad_augmentation_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**kwargs)


def test_an_option_added_later_keeps_old_runs_their_identity():
    """At their neutral values the affine keys are not part of a run's identity (runs
    recorded before they existed stay their own); set, they are."""
    plain = fingerprint(compose([])).identity
    assert not any(k.startswith("augmentation.affine") for k in plain)
    assert "callbacks.augmentation_schedule._target_" not in plain
    assert plain["augmentation.flip_prob"] == 0.0  # older keys stay
    augmented = fingerprint(compose(["augmentation=mraugment"])).identity
    assert augmented["augmentation.affine_prob"] == 0.5
    assert augmented["augmentation.schedule"] == "exp"
