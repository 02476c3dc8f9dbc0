"""``bench data``: our loader against fastMRI's reference and a bare h5 read, the device
step (batch preparation) beside them, end to end, and a per-stage profile."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from kspace_mim.bench.timing import sync, timed, timed_side_by_side
from kspace_mim.data.masks import CartesianMask
from kspace_mim.data.mri_data import SliceDataset, list_h5, recons_key
from kspace_mim.data.synthesize import synthesize
from kspace_mim.data.transforms import KspaceTransform, collate_slices, prepare_batch


class RawSlices(Dataset):
    """The limit: the same slices read with h5py (files kept open per worker), nothing else."""

    def __init__(self, root: Path, challenge: str):
        self.key = recons_key(challenge)
        self.items = []
        for path in list_h5(root):
            with h5py.File(path) as hf:
                self.items += [(path, s) for s in range(hf["kspace"].shape[0])]
        self.files: dict[Path, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, s = self.items[i]
        hf = self.files.get(path) or self.files.setdefault(path, h5py.File(path, "r"))
        return hf["kspace"][s], hf[self.key][s]


def _drain(dataset: Dataset, workers: int) -> Callable[[], int]:
    def run() -> int:
        loader = DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=lambda x: x
        )
        return sum(1 for _ in loader)

    return run


def _stage_ms(fn: Callable[[], object], repeats: int, per: int = 1) -> float:
    """Median milliseconds of ``fn`` per item (``per`` items per call), after a warm-up."""

    def run() -> int:
        fn()
        return per

    return 1e3 / timed(run, max(repeats, 3))


def _profile_stages(ours: SliceDataset, batch: list, device: torch.device, repeats: int) -> dict:
    """Where a slice's time goes, stage by stage (ms per slice)."""
    from kspace_mim.physics import crop_image_domain

    kspace, mask, target, attrs, fname, slice_num = ours.read(0)
    on_device = move_data_to_device(batch, device)
    grid = tuple(on_device[0].mask.shape[-2:])
    n = len(batch[0].fname)

    def device_step(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            fn()
            sync(device)

        return run

    with h5py.File(ours.volumes[0].path, "r") as hf:
        read_ms = _stage_ms(lambda: hf["kspace"][0], repeats)
    return {
        "loader_h5_read": read_ms,
        "loader_mask_and_target": _stage_ms(
            lambda: ours.transform(kspace, mask, target, attrs, fname, slice_num), repeats
        ),
        # slice by slice on a CPU, batched on a GPU: as prepare_batch does
        "device_grid_crop": _stage_ms(
            device_step(
                lambda: (
                    [crop_image_domain(k, grid) for k in on_device[0].kspace.split(1)]
                    if device.type == "cpu"
                    else crop_image_domain(on_device[0].kspace, grid)
                )
            ),
            repeats,
            n,
        ),
        "device_all": _stage_ms(device_step(lambda: prepare_batch(on_device)), repeats, n),
    }


def bench_data(
    root: Path | None, workers: int, repeats: int, size: int, coils: int, batch: int = 4
) -> dict:
    """Loader throughput against fastMRI's reference and a bare read; the device step beside.

    Our loader reads, checks and draws the mask; the grid crop, masking, coil
    compression and scaling run batched on the device (:func:`prepare_batch`),
    so they are measured there: on the GPU when there is one, else on this CPU.
    """
    from fastmri.data import SliceDataset as FastMRISliceDataset
    from fastmri.data.subsample import EquispacedMaskFractionFunc
    from fastmri.data.transforms import VarNetDataTransform

    tmp = None
    if root is None:  # knee-like volumes: 2x readout oversampling, ~1.15x phase encodes
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        synthesize(
            root, "multicoil", "val", volumes=2, slices=12, coils=coils, size=size, progress=False
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mask_func = EquispacedMaskFractionFunc([0.08], [4])
    ours = SliceDataset(root, "multicoil", KspaceTransform(CartesianMask(mask_func)))
    theirs = FastMRISliceDataset(root, "multicoil", VarNetDataTransform(mask_func))
    raw = RawSlices(root, "multicoil")
    result = timed_side_by_side(
        {
            "kspace_mim_slices_per_s": _drain(ours, workers),
            "fastmri_slices_per_s": _drain(theirs, workers),
            "raw_h5_slices_per_s": _drain(raw, workers),
        },
        repeats,
    )
    result["speedup_vs_fastmri"] = (
        result["kspace_mim_slices_per_s"] / result["fastmri_slices_per_s"]
    )
    result["fraction_of_raw_read"] = (
        result["kspace_mim_slices_per_s"] / result["raw_h5_slices_per_s"]
    )

    groups = collate_slices([ours[i] for i in range(batch)])
    on_device = move_data_to_device(groups, device)

    def device_step() -> int:
        prepare_batch(on_device)
        sync(device)
        return batch

    # As the DataModule's prepare_on=auto: prepared in the workers on a CPU, on the GPU
    # otherwise.
    in_loader = device.type == "cpu"
    finishing = SliceDataset(
        ours.volumes,
        "multicoil",
        KspaceTransform(CartesianMask(mask_func), prepare_in_loader=in_loader),
    )

    def end_to_end() -> int:
        loader = DataLoader(
            finishing,
            batch_size=batch,
            num_workers=workers,
            collate_fn=collate_slices,
            pin_memory=device.type == "cuda",
        )
        count = 0
        for items in loader:
            sample = prepare_batch(move_data_to_device(items, device))
            count += len(sample.fname)
        sync(device)
        return count

    result["device_step_slices_per_s"] = timed(device_step, repeats)
    result["end_to_end_slices_per_s"] = timed(end_to_end, repeats)
    result["stages_ms_per_slice"] = _profile_stages(ours, groups, device, repeats)
    result["setup"] = {
        "slices": len(ours),
        "kspace_shape": list(ours.volumes[0].shape),
        "model_grid": list(on_device[0].mask.shape[-2:]),
        "workers": workers,
        "device_step_on": str(device),
        "end_to_end_prepare_on": "loader" if in_loader else "device",
        "device_batch": batch,
        "repeats": repeats,
        "mask": "equispaced4x",
    }
    if tmp is not None:
        tmp.cleanup()
    return result
