"""The LightningDataModule: fastMRI folders -> train / val / test loaders on the model grid.

On an accelerator, loaders hand over raw slices with their masks (:class:`SliceSample`,
no FFT in the workers) and :meth:`FastMRIDataModule.on_after_batch_transfer` prepares
each batch on the device (grid crop, mask, coil compression, scale). On a CPU the
workers prepare each slice themselves, in parallel with the training step (``prepare_on``).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, DistributedSampler

from kspace_mim.data.anatomy import SETS, check_people
from kspace_mim.data.augment import Augmentation
from kspace_mim.data.masks import CartesianMask
from kspace_mim.data.mri_data import SliceDataset, Volume, list_h5, scan_volumes
from kspace_mim.data.samplers import GridBatchSampler, VolumeBatchSampler
from kspace_mim.data.split import load_split, protocol_mask_func
from kspace_mim.data.synthesize import LABEL_FREE_TRAIN, ensure_synthetic, split_folders
from kspace_mim.data.transforms import (
    KspaceSample,
    KspaceTransform,
    SliceSample,
    check_grid,
    collate_slices,
    model_grid,
    prepare_batch,
)

log = logging.getLogger(__name__)


class DataFacts(NamedTuple):
    """What a model needs to know of its data, from the DataModule (:meth:`facts`).

    num_coils: input coils per sample (after compression; the largest count when they
        vary), times ``slices`` with adjacent slices.
    coil_counts: the distinct coil counts per slice of the train / val volumes.
    img_size: the largest model grid (rows, cols).
    slices: slices per input stack.
    """

    num_coils: int
    coil_counts: tuple[int, ...]
    img_size: tuple[int, int]
    slices: int


def split_volumes(volumes: list[Volume], val_fraction: float, seed: int) -> tuple[list, list]:
    """Split by volume (never by slice): a seeded shuffle, ``val_fraction`` of volumes to val."""
    if len(volumes) < 2:
        raise ValueError(
            f"cannot split {len(volumes)} volume(s) into train and val; give data.val_path"
        )
    order = torch.randperm(len(volumes), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(max(1, round(val_fraction * len(volumes))), len(volumes) - 1)
    val = sorted(order[:n_val])
    return [v for i, v in enumerate(volumes) if i not in val], [volumes[i] for i in val]


TRAIN_DRAWS = ("random", "first")


def draw_volumes(volumes: list[Volume], n: int, seed: int) -> list[Volume]:
    """``n`` volumes drawn at random, stratified by the files' ``acquisition`` attribute
    (fastMRI's: CORPD_FBK, AXT2, ...; the default data's AXT1 / CORT1 / SAGT1): the
    groups take turns in a seeded random order, each giving a seeded random volume, so
    n volumes cover min(n, groups) acquisitions. Returned in file-name order."""
    rng = random.Random(seed)
    groups: dict[str, list[Volume]] = {}
    for volume in sorted(volumes, key=lambda v: v.path.name):
        groups.setdefault(str(volume.metadata.get("acquisition", "")), []).append(volume)
    order = sorted(groups)
    rng.shuffle(order)
    for name in order:
        rng.shuffle(groups[name])
    chosen: list[Volume] = []
    while len(chosen) < n:
        for name in order:
            if groups[name] and len(chosen) < n:
                chosen.append(groups[name].pop())
    return sorted(chosen, key=lambda v: v.path.name)


class FastMRIDataModule(L.LightningDataModule):
    """fastMRI volumes from folders; the mask and grid of the config.

    Args:
        train_path: the folder of ``.h5`` training volumes.
        val_path: the validation folder; with none the train folder is split by volume
            (``val_fraction``, the paper's 80/20).
        test_path: the test folder; it may hold challenge files (their own masks).
        challenge: "singlecoil" or "multicoil".
        mask: a mask from :mod:`kspace_mim.data.masks`, random in training and
            seeded by file name in validation / test.
        eval_mask: the mask validation and test draw instead (seeded by file name), one
            yardstick whatever trains; None: ``mask``.
        crop_size: model grid side; None uses each volume's recon size.
        virtual_coils: SVD coil compression to this many coils (None: keep; then
            every volume must have the same coil count).
        augmentation: training augmentation (validation / test never augment,
            except ``normalize``, which is part of the model input).
        skip_bad_files: skip unusable files with a warning instead of failing.
        prepare_on: where batches are prepared (grid crop, mask, coil compression,
            scale: the FFTs): "device" (batched after the transfer: GPUs), "loader" (per
            slice in the workers, in parallel with the step: CPU training) or "auto"
            (device on an accelerator, else loader).
        synthetic_root: the folder of the embedded synthetic data set. A configured
            folder ``<synthetic_root>/<challenge>_<split>`` that is missing is written
            on first use; any other missing folder is an error.
        synthetic_set: which embedded set ``synthetic_root`` holds: "colin27" (the
            default: held-out slabs of one brain) or "people" (split by person: the test
            volumes show a person no train or val file shows).
        synthetic_size: the embedded set's grid (recon size, 64: the default).
        people: the people set's heads per split (``{train: [colin27], pool: [colin27,
            mni152], val: [colin27], test: [itk]}``: the default); a test head may be in
            no other split.
        split: a benchmark split (``val99_test100``, shipped); validation on the
            ``val_list`` files of ``val_path``, test on the ``test_list`` files of
            ``test_path`` (default ``<split_dir>/test``, masked by
            ``python -m kspace_mim.data.split``). Listed files that are missing are named.
            Validation then draws the protocol's masks (fastMRI's test set: random 4x /
            8x, seeded by file name).
        split_file: any JSON with ``val_list`` / ``test_list`` instead of ``split``.
        split_dir: where ``python -m kspace_mim.data.split`` wrote the split.
        train_volumes: train on N volumes of the train folder only (label-efficient
            studies), None: all.
        train_draw: how those N are chosen: "random" (a draw stratified by acquisition,
            seeded by ``split_seed``, so each seed draws its own; :func:`draw_volumes`)
            or "first" (the first N by file name).
        pool_path: a second training folder for joint training (``supervision=joint``):
            every step learns from a batch of ``train_path`` (labelled, with its
            ``train_volumes``) and one of this pool (label-free; undersampled-only files
            welcome), the pool cycled at its own pace (Lightning's ``CombinedLoader``).
        train_needs_targets: whether every training file must hold a fully sampled target
            (``supervision=supervised``); False accepts undersampled-only files (fastMRI's
            test layout, their own mask) for ``supervision=ssdu`` or ``mim``.
        adjacent_slices: N neighbours on either side of each slice, stacked as extra
            coils (2N + 1 slices, the edge slice repeated at a volume's ends), for the
            models whose denoiser sees images; the target stays the middle slice's.
        grid: the model grid (:func:`kspace_mim.data.transforms.model_grid`):
            "square" (``crop_size`` x ``crop_size``, both axes cropped before masking) or
            "native" (the file's own k-space, masks with its padding columns excluded;
            only the image is cropped). Training batches hold slices of one grid and one
            coil count.
        readout: on the native grid, "keep" the readout oversampling or "crop" it.
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        challenge: str = "multicoil",
        mask: CartesianMask | None = None,
        eval_mask: CartesianMask | None = None,
        crop_size: int | None = None,
        virtual_coils: int | None = None,
        augmentation: Augmentation | None = None,
        batch_size: int = 1,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        skip_bad_files: bool = False,
        pin_memory: bool = False,
        max_open_files: int = 128,
        prepare_on: str = "auto",
        synthetic_root: str | None = None,
        synthetic_set: str = "colin27",
        people: dict[str, list[str]] | None = None,
        synthetic_size: int = 64,
        adjacent_slices: int = 0,
        train_volumes: int | None = None,
        train_draw: str = "random",
        train_needs_targets: bool = True,
        pool_path: str | None = None,
        split: str | None = None,
        split_file: str | None = None,
        split_dir: str | None = None,
        grid: str = "square",
        readout: str = "keep",
    ):
        super().__init__()
        check_grid(grid, readout)  # names checked before any scan
        self.grid, self.readout = grid, readout
        self.split_lists = load_split(split, split_file) if split or split_file else None
        # A benchmark split validates as it tests: the protocol's masks (fastMRI's test
        # set: random, 4x / 0.08 or 8x / 0.04, seeded by file name), whatever trains.
        protocol = CartesianMask(protocol_mask_func()) if self.split_lists else None
        self.eval_mask = protocol if protocol is not None else eval_mask
        self.eval_mask = mask if self.eval_mask is None else self.eval_mask
        if self.split_lists and not test_path and split_dir:
            test_path = str(Path(os.path.expanduser(split_dir)) / "test")
        if train_volumes is not None and train_volumes < 1:
            raise ValueError(f"data.train_volumes must be >= 1 (or null), got {train_volumes}")
        self.train_volumes = train_volumes
        if train_draw not in TRAIN_DRAWS:
            raise ValueError(f"data.train_draw={train_draw!r}: one of {TRAIN_DRAWS}")
        self.train_draw = train_draw
        self.train_needs_targets = train_needs_targets
        if adjacent_slices < 0:
            raise ValueError(f"data.adjacent_slices must be >= 0, got {adjacent_slices}")
        self.adjacent_slices = adjacent_slices
        if prepare_on not in ("auto", "device", "loader"):
            raise ValueError(f"data.prepare_on must be auto, device or loader, got {prepare_on!r}")
        self.prepare_on = prepare_on
        self.synthetic_root = synthetic_root
        if synthetic_set not in SETS:
            raise ValueError(f"data.synthetic_set={synthetic_set!r}: one of {SETS}")
        self.synthetic_set = synthetic_set
        if people is not None and synthetic_set != "people":
            raise ValueError("data.people splits data.synthetic_set=people (data=people) only")
        self.people = None if people is None else check_people(dict(people))
        if synthetic_size < 16 or synthetic_size % 2:
            raise ValueError(f"data.synthetic_size must be even and >= 16, got {synthetic_size}")
        self.synthetic_size = synthetic_size
        self.paths = {"train": train_path, "val": val_path, "test": test_path, "pool": pool_path}
        self.challenge = challenge
        self.mask = mask
        self.crop_size = crop_size
        self.virtual_coils = virtual_coils
        self.augmentation = augmentation or Augmentation()
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.skip_bad_files = skip_bad_files
        self.pin_memory = pin_memory
        self.max_open_files = max_open_files
        self.datasets: dict[str, SliceDataset] = {}

    def _scan(self, stage: str) -> list[Volume]:
        path = self.paths[stage]
        try:
            files = list_h5(Path(os.path.expanduser(path)))
            if self.split_lists and stage in ("val", "test"):
                files = self._split_files(stage, files)
        except FileNotFoundError as err:
            hint = (
                "point it at a folder of fastMRI .h5 files"
                if not self.synthetic_root
                else f"the synthetic default is written only to {self.synthetic_root}/"
                f"{self.challenge}_<split>; point it at a folder of fastMRI .h5 files"
            )
            raise FileNotFoundError(f"data.{stage}_path: {err}; {hint}") from None
        return scan_volumes(files, self.challenge, self.skip_bad_files)

    def _dataset(self, volumes: list[Volume], train: bool) -> SliceDataset:
        eval_augmentation = Augmentation(normalize=self.augmentation.normalize)
        transform = KspaceTransform(
            mask_func=self.mask if train else self.eval_mask,
            crop_size=self.crop_size,
            virtual_coils=self.virtual_coils,
            augmentation=self.augmentation if train else eval_augmentation,
            deterministic=not train,
            adjacent_slices=self.adjacent_slices,
            grid=self.grid,
            readout=self.readout,
        )
        return SliceDataset(
            volumes,
            self.challenge,
            transform,
            adjacent_slices=self.adjacent_slices,
            max_open_files=self.max_open_files,
        )

    def _split_files(self, stage: str, files: list[Path]) -> list[Path]:
        """The benchmark split's files of this stage, in the split's order; missing ones named."""
        names = self.split_lists[f"{stage}_list"]
        by_name = {f.name: f for f in files}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) of the split's {stage}_list are not in "
                f"{files[0].parent}: {', '.join(missing)}"
            )
        return [by_name[n] for n in names]

    def _take_train_volumes(self, train: list[Volume]) -> list[Volume]:
        """``train_volumes`` of them, and only files with targets when training needs them."""
        if self.train_volumes is not None:
            if self.train_volumes > len(train):
                raise ValueError(
                    f"data.train_volumes={self.train_volumes}, but the train folder has "
                    f"{len(train)} volume(s)"
                )
            if self.train_draw == "first":
                train = sorted(train, key=lambda v: v.path.name)[: self.train_volumes]
            else:
                train = draw_volumes(train, self.train_volumes, self.split_seed)
            log.info(
                "training on %d volume(s) (%s): %s",
                len(train),
                self.train_draw,
                ", ".join(v.path.name for v in train[:8]) + (" ..." if len(train) > 8 else ""),
            )
        untargeted = [v.path.name for v in train if not v.has_target]
        if untargeted and self.train_needs_targets:
            names = ", ".join(untargeted[:10]) + (", ..." if len(untargeted) > 10 else "")
            raise ValueError(
                f"data.train_path: {len(untargeted)} file(s) have no fully sampled target "
                f"(undersampled, fastMRI's test layout): {names}; supervision=ssdu or mim learn "
                "from such files, supervised training needs reconstruction_rss / _esc"
            )
        return train

    def prepare_data(self) -> None:
        """Write the synthetic default set on first use: when a configured folder is one of
        its ``<synthetic_root>/<challenge>_{train,val,test}`` folders, the missing ones of
        the three are written (the test folder is the README's ``reconstruct`` example)
        and those already there checked to hold the set this run asks for."""
        if not self.synthetic_root:
            return
        root = Path(os.path.expanduser(self.synthetic_root))
        defaults = split_folders(root, self.challenge)
        configured = {Path(os.path.expanduser(p)) for p in self.paths.values() if p}
        if any(folder in configured for folder in defaults.values()):
            # The label-free copy of train only where a run reads it. Folders already
            # there are checked against the set this run asks for (written by it).
            label_free = defaults.pop(LABEL_FREE_TRAIN)
            if label_free in configured:
                defaults[LABEL_FREE_TRAIN] = label_free
            ensure_synthetic(
                defaults, self.challenge, self.synthetic_set, self.people, self.synthetic_size
            )

    def setup(self, stage: str | None = None) -> None:
        """Scan the folders (every bad file reported at once) and build the datasets."""
        # Idempotent and safe in parallel: also right when setup runs before any Trainer.
        self.prepare_data()
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            if self.paths["train"] is None and self.paths["val"] is None:
                raise ValueError("data.train_path (or data.val_path) must be set to train")
            train = self._scan("train") if self.paths["train"] else []
            if self.paths["val"]:
                val = self._scan("val")
            else:
                train, val = split_volumes(train, self.val_fraction, self.split_seed)
                log.info(
                    "split %s by volume: %d train, %d val",
                    self.paths["train"],
                    len(train),
                    len(val),
                )
            train = self._take_train_volumes(train)
            if train:
                self.datasets["train"] = self._dataset(train, train=True)
            if self.paths["pool"] and stage in (None, "fit"):
                self.datasets["pool"] = self._dataset(self._scan("pool"), train=True)
            self.datasets["val"] = self._dataset(val, train=False)
        if stage in (None, "test") and self.paths["test"] and "test" not in self.datasets:
            test = self._scan("test")
            self.datasets["test"] = self._dataset(test, train=False)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def slice_key(self, volume: Volume) -> tuple[int, tuple[int, int]]:
        """(coils the model sees per slice, model grid): slices with equal keys batch."""
        coils = volume.num_coils
        if self.virtual_coils and self.challenge == "multicoil" and coils > 1:
            coils = self.virtual_coils  # compressed, or zero-padded up to it
        own_mask = volume.mask is not None
        recon = tuple(volume.metadata["recon_size"][:2])
        shape = tuple(volume.shape[-2:])
        return coils, model_grid(shape, recon, own_mask, self.grid, self.readout, self.crop_size)

    def facts(self) -> DataFacts:
        """What a model is built for, from the headers the folder scan parsed (no slice
        is read): coil counts and grids of the train and val volumes."""
        self.setup("fit")
        parts = (self.datasets.get("train"), self.datasets["val"], self.datasets.get("pool"))
        volumes = [v for ds in parts if ds for v in ds.volumes]
        keys = [self.slice_key(v) for v in volumes]
        slices = 2 * self.adjacent_slices + 1
        coil_counts = tuple(sorted({c for c, _ in keys}))
        return DataFacts(
            num_coils=slices * max(coil_counts),
            coil_counts=coil_counts,
            img_size=(max(g[0] for _, g in keys), max(g[1] for _, g in keys)),
            slices=slices,
        )

    def prepare_in_loader(self) -> bool:
        """Whether batches are prepared in the loader (see ``prepare_on``)."""
        if self.prepare_on != "auto":
            return self.prepare_on == "loader"
        trainer = getattr(self, "trainer", None)
        return trainer is None or trainer.strategy.root_device.type == "cpu"

    def _loader(self, dataset: SliceDataset, **kwargs) -> DataLoader:
        # Decided here, not in setup: the trainer (and so its device) is known by now.
        dataset.transform.prepare_in_loader = self.prepare_in_loader()
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_slices,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """The training batches; with a pool (``pool_path``) a dict ``{"labelled": batch,
        "pool": batch}`` per step, the shorter loader cycled."""
        if "pool" not in self.datasets:
            return self._train_loader(self.datasets["train"])
        loaders = {
            "labelled": self._train_loader(self.datasets["train"]),
            "pool": self._train_loader(self.datasets["pool"]),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def _train_loader(self, dataset: SliceDataset) -> DataLoader:
        world, rank = self._world()
        by_volume = [self.slice_key(v) for v in dataset.volumes]
        if len(set(by_volume)) > 1:
            # Grids (native widths, undersampled files' own widths) or coil counts differ:
            # batch only slices that share both.
            keys = [by_volume[v] for v, _ in dataset.index]
            sampler = GridBatchSampler(keys, self.batch_size, self.split_seed, world, rank)
            return self._loader(dataset, batch_sampler=sampler)
        if world > 1:
            # Seeded by the run's seed (seed_everything's PL_GLOBAL_SEED, as Lightning seeds
            # the samplers it makes): seed= changes the data order under DDP too.
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            sampler = DistributedSampler(
                dataset, world, rank, shuffle=True, drop_last=True, seed=seed
            )
            return self._loader(
                dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True
            )
        return self._loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(dataset) > self.batch_size,
        )

    def _eval_loader(self, stage: str) -> DataLoader:
        dataset = self.datasets[stage]
        world, rank = self._world()
        sampler = VolumeBatchSampler(dataset.slices_by_volume(), self.val_batch_size, world, rank)
        return self._loader(dataset, batch_sampler=sampler)

    def on_after_batch_transfer(
        self, batch: list[SliceSample] | KspaceSample | dict, dataloader_idx: int = 0
    ) -> KspaceSample | dict[str, KspaceSample]:
        """Prepare a loader batch where it now lives (the GPU in training): see transforms
        (each part of a joint batch alike)."""
        if isinstance(batch, dict):
            return {k: self.on_after_batch_transfer(v, dataloader_idx) for k, v in batch.items()}
        return prepare_batch(batch, self.virtual_coils, self.augmentation.normalize)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
