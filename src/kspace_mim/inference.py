"""Run a model over fastMRI volumes and write fastMRI submission files, one volume at a time.

Networks here are size-agnostic (convolutional decoders, Swin windows with padding,
ViT position embeddings interpolated), so a model trained on one grid runs on each
volume's own grid: the header's recon size (readout oversampling removed), or
``crop_size`` when given. Files that bring their own mask keep their width. Memory is
bounded by one volume, never the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from tqdm import tqdm

from kspace_mim.data.augment import Augmentation
from kspace_mim.data.mri_data import DataError, SliceDataset, Volume, inspect_volumes, list_h5
from kspace_mim.data.transforms import collate_slices, prepare_batch
from kspace_mim.figures import comparison_figure, save_figure
from kspace_mim.files import write_h5
from kspace_mim.metrics import kspace_picture
from kspace_mim.modules.reconstruction import ReconstructionModule


@dataclass
class VolumeResult:
    """One volume's reconstruction. image, zero_filled, target: (slices, h, w)."""

    image: np.ndarray
    zero_filled: np.ndarray
    target: np.ndarray | None
    kspace_pictures: tuple[np.ndarray, np.ndarray] | None = None  # middle slice, before / after


@dataclass
class Report:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


# Lightning's precision names -> the autocast dtype the network runs in (None: float32).
AUTOCAST = {
    "32-true": None,
    "32": None,
    "bf16-mixed": torch.bfloat16,
    "bf16": torch.bfloat16,
    "16-mixed": torch.float16,
}


@torch.no_grad()
def reconstruct_volume(
    model: ReconstructionModule,
    dataset: SliceDataset,
    batch_size: int,
    device: torch.device,
    precision: str = "32-true",
) -> VolumeResult:
    """Reconstruct every slice of ``dataset`` (one volume) in batches; the network under
    ``precision``'s autocast (the physics layers keep float32 whatever it is)."""
    dtype = AUTOCAST[precision]
    images, zero_filled, targets, pictures = [], [], [], None
    middle = len(dataset) // 2
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        items = collate_slices([dataset[i] for i in idx])
        transform = dataset.transform
        batch = prepare_batch(
            move_data_to_device(items, device), transform.virtual_coils, transform.normalize
        )
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model.reconstruct(batch)
        images.append(out.image.float().cpu())
        zero_filled.append(model.zero_filled_image(batch).float().cpu())
        if batch.target.numel():
            targets.append(batch.target.float().cpu())
        if middle in idx and out.kspace is not None:
            j = middle - start
            acquired = model.centre_slice(batch).masked_kspace[j]
            pictures = (kspace_picture(acquired), kspace_picture(out.kspace[j]))
    target = torch.cat(targets).numpy() if targets else None
    return VolumeResult(torch.cat(images).numpy(), torch.cat(zero_filled).numpy(), target, pictures)


def write_submission(path: Path, reconstruction: np.ndarray) -> None:
    """fastMRI's submission format: ``reconstruction`` (slices, h, w) float32."""
    write_h5(
        path, lambda hf: hf.create_dataset("reconstruction", data=reconstruction.astype(np.float32))
    )


def reconstruct_folder(
    model: ReconstructionModule,
    input_dir: str | Path,
    output_dir: str | Path,
    challenge: str,
    transform_factory,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    figures: bool = False,
    precision: str = "32-true",
) -> Report:
    """Every ``.h5`` of ``input_dir`` -> ``output_dir/<same name>.h5``; bad volumes reported.

    transform_factory: ``volume -> KspaceTransform`` (mask, grid and coils for that volume).
    precision: a key of :data:`AUTOCAST` (the network's autocast).
    """
    if precision not in AUTOCAST:
        raise ValueError(f"precision={precision!r}: one of {', '.join(AUTOCAST)}")
    output_dir = Path(output_dir)
    device = torch.device(device)
    model = model.to(device).eval()
    volumes, failed = inspect_volumes(list_h5(input_dir), challenge)
    report = Report(failed=list(failed))
    for volume in tqdm(volumes, desc="reconstruct", unit="volume"):
        try:
            transform = transform_factory(volume)
            dataset = SliceDataset(
                [volume], challenge, transform, adjacent_slices=transform.adjacent_slices
            )
            result = reconstruct_volume(model, dataset, batch_size, device, precision)
        except (DataError, ValueError, RuntimeError) as err:
            report.failed.append((volume.path, str(err)))
            continue
        out = output_dir / volume.path.name
        write_submission(out, result.image)
        report.written.append(out)
        if figures:
            save_volume_figure(result, volume, output_dir / "figures" / f"{volume.path.stem}.png")
    return report


def save_volume_figure(result: VolumeResult, volume: Volume, path: Path) -> Path:
    s = result.image.shape[0] // 2
    target = None if result.target is None else result.target[s]
    kz, kr = result.kspace_pictures or (None, None)
    fig = comparison_figure(
        target, result.zero_filled[s], result.image[s], kz, kr, f"{volume.path.name}: slice {s}"
    )
    return save_figure(fig, path)


def eval_augmentation(model: ReconstructionModule) -> Augmentation:
    """The input normalisation the model was trained with (no random augmentation)."""
    return Augmentation(normalize=bool(model.data_config.get("normalize", False)))
