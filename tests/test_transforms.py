"""The slice transform: mask=none returns the fastMRI target; scaling is undone exactly."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc

from kspace_mim.data.augment import Augmentation
from kspace_mim.data.masks import CartesianMask, NoMask, RandomPatchMask
from kspace_mim.data.mri_data import DataError, SliceDataset
from kspace_mim.data.transforms import (
    KspaceTransform,
    SliceSample,
    collate_slices,
    prepare_batch,
    prepare_slice,
    stack_slice,
)
from kspace_mim.physics import (
    channels_to_complex,
    coil_compression_matrix,
    complex_to_channels,
    compress_coils,
    kspace_to_image,
    to_original_units,
)


def model_slice(ds: SliceDataset, i: int):
    """Slice ``i`` as the model sees it: the loader's transform, then batch preparation."""
    return prepare_slice(ds[i], ds.transform.virtual_coils, ds.transform.normalize)


def pipeline_image(sample):
    """The image the pipeline forms from a sample's acquired k-space, in original units."""
    kspace = to_original_units(sample.masked_kspace[None], sample.scale[None], sample.offset[None])
    return kspace_to_image(kspace, tuple(sample.crop_size.tolist()))[0]


@pytest.mark.parametrize(
    "folder, challenge, crop_size, virtual_coils, augmentation",
    [
        ("multicoil_train", "multicoil", None, None, None),
        ("multicoil_val", "multicoil", 32, None, None),
        ("multicoil_train", "multicoil", 24, None, None),  # grid smaller than the recon
        ("multicoil_train", "multicoil", 48, None, None),  # grid larger: zero-padded FOV
        ("singlecoil_train", "singlecoil", 32, None, None),
        ("mixed_coils", "multicoil", 32, 6, None),  # 4 and 6 coils -> 6 virtual: unitary
        ("multicoil_val", "multicoil", 32, None, Augmentation(normalize=True)),
    ],
)
def test_mask_none_returns_the_target(
    data_root, folder, challenge, crop_size, virtual_coils, augmentation
):
    transform = KspaceTransform(NoMask(), crop_size, virtual_coils, augmentation)
    ds = SliceDataset(data_root / folder, challenge, transform)
    raw = SliceDataset(data_root / folder, challenge)
    for i in range(len(ds)):
        sample = model_slice(ds, i)
        file_target = torch.from_numpy(raw[i][2])
        image = pipeline_image(sample)
        assert image.shape == sample.target.shape
        h, w = image.shape
        r0, c0 = file_target.shape[0] // 2 - h // 2, file_target.shape[1] // 2 - w // 2
        expected = file_target[r0 : r0 + h, c0 : c0 + w]
        torch.testing.assert_close(sample.target, expected, rtol=0, atol=0)
        torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
        assert torch.equal(sample.masked_kspace, sample.kspace)
        assert sample.max_value == pytest.approx(raw[i][3]["max"])


def test_sample_fields_and_scale(data_root):
    mask = CartesianMask(EquispacedMaskFractionFunc([0.08], [4]))
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", KspaceTransform(mask, 32))
    s = model_slice(ds, 0)
    assert s.masked_kspace.shape == s.kspace.shape == (4, 32, 32)
    assert s.masked_kspace.dtype == torch.complex64 and s.mask.dtype == torch.bool
    assert s.mask.shape == (1, 32, 32)
    # model units are O(1): the zero-filled RSS image has unit RMS after scaling
    rms = kspace_to_image(s.masked_kspace[None]).square().mean().sqrt()
    assert rms == pytest.approx(1.0, rel=1e-4)
    assert 1e-7 < s.scale < 1e-2  # the synthetic data has fastMRI's tiny magnitudes
    # removed samples are true zeros; acquired ones equal the full k-space
    removed = ~s.mask.expand_as(s.masked_kspace)
    assert not torch.signbit(torch.view_as_real(s.masked_kspace[removed])).any()
    assert (s.masked_kspace[removed] == 0).all()
    torch.testing.assert_close(s.masked_kspace[~removed], s.kspace[~removed])
    # complex -> channels -> complex is exact for a batch
    batch = s.masked_kspace[None]
    assert torch.equal(channels_to_complex(complex_to_channels(batch)), batch)


def test_validation_masks_seeded_by_file_training_masks_random(data_root):
    mask = RandomPatchMask(0.6, 4)
    val = SliceDataset(data_root / "multicoil_val", "multicoil", KspaceTransform(mask, 32))
    assert torch.equal(model_slice(val, 0).mask, model_slice(val, 0).mask)
    # one mask per volume, as fastMRI; another file, another mask
    assert torch.equal(model_slice(val, 0).mask, model_slice(val, 1).mask)
    assert not torch.equal(model_slice(val, 0).mask, model_slice(val, 3).mask)
    train = SliceDataset(
        data_root / "multicoil_val", "multicoil", KspaceTransform(mask, 32, deterministic=False)
    )
    masks = [model_slice(train, 0).mask for _ in range(4)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])


def test_test_files_bring_their_own_mask(data_root):
    configured = RandomPatchMask(0.6, 4)
    ds = SliceDataset(data_root / "multicoil_test", "multicoil", KspaceTransform(configured, 32))
    raw = SliceDataset(data_root / "multicoil_test", "multicoil")
    for i in range(len(ds)):
        s, (kspace, file_mask, _, attrs, _, _) = model_slice(ds, i), raw[i]
        expected = file_mask.copy()
        expected[: attrs["padding_left"]] = False
        expected[attrs["padding_right"] :] = False
        assert s.mask.shape == (1, 32, kspace.shape[-1])  # readout cropped, columns kept
        assert torch.equal(s.mask[0, 0], torch.from_numpy(expected))
        assert (s.mask == s.mask[:, :1]).all()  # whole columns
        assert (s.masked_kspace[~s.mask.expand_as(s.masked_kspace)] == 0).all()
        assert s.target.numel() == 0 and s.max_value == 0
        assert s.num_low_frequencies == attrs["num_low_frequency"]


def test_flip_is_kspace_correct(data_root):
    """A flipped sample's k-space is the k-space of the flipped image, target included."""
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", KspaceTransform(NoMask(), 32))
    flipped = SliceDataset(
        data_root / "multicoil_val",
        "multicoil",
        KspaceTransform(
            NoMask(), 32, augmentation=Augmentation(flip_prob=1.0), deterministic=False
        ),
    )
    a, b = model_slice(ds, 0), model_slice(flipped, 0)
    torch.testing.assert_close(
        b.target, a.target.flip(-1, -2), rtol=1e-4, atol=1e-4 * float(a.target.max())
    )
    torch.testing.assert_close(
        pipeline_image(b), a.target.flip(-1, -2), rtol=1e-4, atol=1e-4 * float(a.target.max())
    )


def test_random_crop_moves_the_field_of_view(data_root):
    aug = Augmentation(random_crop=True)
    ds = SliceDataset(
        data_root / "multicoil_train",
        "multicoil",
        KspaceTransform(NoMask(), 24, augmentation=aug, deterministic=False),
    )
    torch.manual_seed(0)
    targets = [model_slice(ds, 0).target for _ in range(6)]
    assert any(not torch.equal(targets[0], t) for t in targets[1:])
    for s in (model_slice(ds, 0), model_slice(ds, 1)):
        torch.testing.assert_close(
            pipeline_image(s), s.target, rtol=1e-4, atol=1e-5 * float(s.target.max())
        )


def test_all_zero_slice_is_an_error():
    kspace = np.zeros((2, 16, 16), np.complex64)
    attrs = {"recon_size": (8, 8, 1), "padding_left": 0, "padding_right": 16}
    with pytest.raises(DataError, match="f.h5: slice 3: k-space is all zero"):
        transform = KspaceTransform(NoMask())
        prepare_slice(transform(kspace, None, None, attrs, "f.h5", 3))


def test_loader_hands_over_the_stored_kspace(data_root):
    """No FFT and no copy in the loader: the read k-space, with a mask on the model grid."""
    mask = CartesianMask(EquispacedMaskFractionFunc([0.08], [4]))
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", KspaceTransform(mask, 32))
    raw = SliceDataset(data_root / "multicoil_val", "multicoil")
    item, stored = ds[1], raw[1][0]
    assert np.array_equal(item.kspace.numpy(), stored)
    assert item.kspace.shape == stored.shape != (4, 32, 32)
    assert item.mask.shape == (1, 32, 32) and not item.undersampled


def test_mixed_shapes_batch_equals_slice_by_slice(data_root):
    """4- and 6-coil volumes of different widths in one batch: grouped, finished, joined."""
    transform = KspaceTransform(RandomPatchMask(0.6, 4), 32, virtual_coils=4)
    ds = SliceDataset(data_root / "mixed_coils", "multicoil", transform)
    picks = [0, len(ds) - 1, 1]  # a 4-coil, the 6-coil, a 4-coil volume
    items = [ds[i] for i in picks]
    groups = collate_slices(items)
    assert len(groups) == 2 and [len(g.fname) for g in groups] == [2, 1]
    batch = prepare_batch(groups, virtual_coils=4)
    assert batch.masked_kspace.shape == (3, 4, 32, 32)
    order = [0, 2, 1]  # groups keep their first appearance: both 4-coil slices first
    for row, i in enumerate(order):
        alone = prepare_slice(items[i], virtual_coils=4)
        assert batch.fname[row] == alone.fname and int(batch.slice_num[row]) == alone.slice_num
        for name in ("masked_kspace", "kspace", "target", "scale", "mask"):
            torch.testing.assert_close(getattr(batch, name)[row], getattr(alone, name))


def test_mixed_coils_without_compression_is_a_clear_error(data_root):
    transform = KspaceTransform(NoMask(), 32)
    ds = SliceDataset(data_root / "mixed_coils", "multicoil", transform)
    with pytest.raises(DataError, match="a batch mixes model grids or coil counts"):
        prepare_batch(collate_slices([ds[0], ds[len(ds) - 1]]))


def test_zero_acquired_samples_name_the_slice(data_root):
    class Nothing:
        def __call__(self, shape, seed=None):
            return torch.zeros(1, shape[1], dtype=torch.bool), 0, float("inf")

    transform = KspaceTransform(Nothing(), 32)
    ds = SliceDataset(data_root / "multicoil_val", "multicoil", transform)
    name = ds.volumes[0].path.name
    with pytest.raises(DataError, match=rf"{name}: slice 1: acquired k-space is zero"):
        prepare_batch(collate_slices([ds[1]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, complex(0, -np.inf)])
def test_nonfinite_slice_names_file_and_slice(copy_folder, bad):
    folder = copy_folder("multicoil_val")
    path = sorted(folder.glob("*.h5"))[1]
    with h5py.File(path, "a") as hf:
        k = hf["kspace"][2]
        k[0, 5, 5] = bad
        hf["kspace"][2] = k
    transform = KspaceTransform(NoMask(), 32)
    ds = SliceDataset(folder, "multicoil", transform)
    prepare_batch(collate_slices([ds[3], ds[4]]))  # the first slices are fine
    with pytest.raises(DataError, match=rf"{path.name}: slice 2: k-space contains NaN or Inf"):
        prepare_batch(collate_slices([ds[4], ds[5]]))


def _original(sample):
    return to_original_units(sample.masked_kspace, sample.scale, sample.offset)


def test_adjacent_slices_are_stacked_as_coils(data_root):
    """With adjacent slices each slice of the stack is that slice as prepared alone (in
    original units: one scale for the stack); the mask and target are the middle slice's."""

    def dataset(n: int) -> SliceDataset:
        mask = CartesianMask(EquispacedMaskFractionFunc([0.08], [4]))
        transform = KspaceTransform(mask, 32, adjacent_slices=n)
        return SliceDataset(data_root / "multicoil_val", "multicoil", transform, adjacent_slices=n)

    plain, stacked = dataset(0), dataset(1)
    for i in (0, 1):  # slice 0 (the edge, repeated) and slice 1 (both neighbours exist)
        batch = prepare_batch(collate_slices([stacked[i]]))
        assert batch.masked_kspace.shape[1] == 3 * 4
        middle = prepare_batch(collate_slices([plain[i]]))
        for j, neighbour in enumerate((max(i - 1, 0), i, i + 1)):
            alone = prepare_batch(collate_slices([plain[neighbour]]))
            torch.testing.assert_close(
                _original(stack_slice(batch, j, 3)), _original(alone), rtol=1e-4, atol=1e-6
            )
        torch.testing.assert_close(stack_slice(batch, 1, 3).target, middle.target)
        torch.testing.assert_close(batch.mask, middle.mask)


def test_a_stack_is_compressed_with_its_middle_slice_matrix():
    """Coil compression of a stack: one matrix, the middle slice's, for every slice (so
    the virtual coils mean the same across the stack)."""
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(3, 4, 16, 16, dtype=torch.complex64, generator=g)
    item = SliceSample(
        kspace=kspace,
        mask=torch.ones(1, 16, 16, dtype=torch.bool),
        target=torch.zeros(0, 0),
        max_value=torch.tensor(1.0),
        crop_size=torch.tensor([16, 16]),
        undersampled=torch.tensor(False),
        fname="f.h5",
        slice_num=0,
        num_low_frequencies=0,
    )
    batch = prepare_batch(collate_slices([item]), virtual_coils=2)
    matrix = coil_compression_matrix(kspace[None, 1], 2)
    for j in range(3):
        expected = compress_coils(kspace[None, j], matrix)
        torch.testing.assert_close(_original(stack_slice(batch, j, 3)), expected)
