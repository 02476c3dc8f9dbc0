"""Reading fastMRI HDF5 volumes: one slice at a time, files opened once per worker.

:class:`SliceDataset` returns exactly what ``fastmri.data.SliceDataset`` returns for
the same file and slice (``kspace, mask, target, attrs, fname, slice_num``), but
it validates every file once when the folder is scanned (naming each bad file
and its reason), parses each header once, keeps one open ``h5py.File`` per
volume per process (re-opened after a fork, never shared) and reads only ``*.h5``
files. Each slice is checked for NaN / Inf (and all-zero k-space) where the batch is
prepared, on the device (:func:`kspace_mim.data.transforms.prepare_batch`): one pass
there, none in the loader.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as etree
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from fastmri.data.mri_data import et_query

log = logging.getLogger(__name__)

CHALLENGES = ("singlecoil", "multicoil")


class DataError(ValueError):
    """A fastMRI file or slice that cannot be used; the message names file, slice and reason."""


class BadFilesError(DataError):
    """One or more files of a folder are unusable; lists every one with its reason."""

    def __init__(self, bad: Sequence[tuple[Path, str]]):
        self.bad = list(bad)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.bad)
        super().__init__(
            f"{len(self.bad)} unusable fastMRI file(s):\n{lines}\n"
            "Fix or remove them, or set data.skip_bad_files=true to skip them with a warning."
        )


def recons_key(challenge: str) -> str:
    """The fastMRI target dataset name for a challenge (as fastmri.data.SliceDataset)."""
    check_challenge(challenge)
    return "reconstruction_esc" if challenge == "singlecoil" else "reconstruction_rss"


def check_challenge(challenge: str) -> None:
    if challenge not in CHALLENGES:
        raise ValueError(f"challenge must be one of {CHALLENGES}, got {challenge!r}")


@dataclass(frozen=True)
class Volume:
    """What a folder scan learns about one volume (read once, reused for every slice).

    metadata: fastMRI's metadata dict: ``padding_left``, ``padding_right``,
    ``encoding_size``, ``recon_size`` and the file's attrs.
    shape: k-space shape of one slice: (coils, rows, cols) or (rows, cols).
    """

    path: Path
    num_slices: int
    shape: tuple[int, ...]
    metadata: dict[str, Any] = field(repr=False)
    has_target: bool = False
    mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_coils(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1


# What a real fastMRI file can hold, with a generous margin (a knee multicoil slice is
# 15 x 640 x 368 complex64 = 28 MB, a brain one up to 20 x 768 x 396 = 49 MB): a file
# that declares more is refused before anything is allocated. KSPACE_MIM_MAX_SLICE_MB
# raises the byte cap for data that really is larger.
MAX_SLICE_MB = 1024
MAX_SIDE = 8192  # rows, columns, header matrix sizes
MAX_COILS = 256
MAX_SLICES = 4096
MAX_HEADER_BYTES = 16 * 2**20
MAX_ATTR_BYTES = 2**20
# Header facts a file attribute may not contradict (fastMRI's metadata lets attrs win).
HEADER_KEYS = ("padding_left", "padding_right", "encoding_size", "recon_size")


def max_slice_bytes() -> int:
    """The byte cap of one slice's k-space (or target): ``KSPACE_MIM_MAX_SLICE_MB``."""
    value = os.environ.get("KSPACE_MIM_MAX_SLICE_MB", str(MAX_SLICE_MB))
    try:
        return int(float(value) * 2**20)
    except ValueError:
        raise ValueError(f"KSPACE_MIM_MAX_SLICE_MB={value!r} is not a number") from None


def check_dataset_size(path: Path, name: str, dataset: h5py.Dataset, sides: int) -> None:
    """A dataset of (slices, ..., rows, cols) within the limits, before it is read."""
    shape = dataset.shape
    per_slice = int(np.prod(shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    if shape[0] > MAX_SLICES or any(n > MAX_SIDE for n in shape[-sides:]):
        raise DataError(
            f"{path}: '{name}' declares shape {shape}, beyond any real scan "
            f"(at most {MAX_SLICES} slices, sides of {MAX_SIDE}); refused"
        )
    if len(shape) == 4 and shape[1] > MAX_COILS:
        raise DataError(f"{path}: '{name}' declares {shape[1]} coils (at most {MAX_COILS})")
    if per_slice > max_slice_bytes():
        raise DataError(
            f"{path}: '{name}' declares {per_slice / 2**20:.0f} MB per slice, above the cap "
            f"of {max_slice_bytes() / 2**20:.0f} MB (KSPACE_MIM_MAX_SLICE_MB raises it); refused"
        )


def check_header(path: Path, metadata: dict[str, Any], width: int) -> None:
    """Matrix sizes within the limits and the acquired columns inside the k-space width."""
    for key in ("encoding_size", "recon_size"):
        if not all(1 <= n <= MAX_SIDE for n in metadata[key]):
            raise DataError(f"{path}: header {key} {metadata[key]} outside 1..{MAX_SIDE}")
    left, right = metadata["padding_left"], metadata["padding_right"]
    if not 0 <= left < right <= width:
        raise DataError(
            f"{path}: header puts the acquired columns at {left}..{right}, outside the "
            f"k-space width {width}"
        )


def check_attrs(path: Path, hf: h5py.File, metadata: dict[str, Any]) -> dict[str, Any]:
    """The file's attributes, each small, none contradicting the parsed header."""
    attrs = {}
    for name in hf.attrs:
        if hf.attrs.get_id(name).get_storage_size() > MAX_ATTR_BYTES:
            raise DataError(f"{path}: attribute {name!r} is larger than {MAX_ATTR_BYTES} bytes")
        attrs[name] = hf.attrs[name]
    for key in HEADER_KEYS:
        if key in attrs:
            given = np.asarray(attrs[key]).tolist()
            given = tuple(given) if isinstance(given, list) else given
            if given != metadata[key]:
                raise DataError(
                    f"{path}: attribute {key}={given} contradicts the header's {metadata[key]}"
                )
    return attrs


def parse_header(xml: bytes | str) -> dict[str, Any]:
    """Sizes and k-space padding from an ISMRMRD header, as fastMRI computes them."""
    root = etree.fromstring(xml)
    enc = ["encoding", "encodedSpace", "matrixSize"]
    rec = ["encoding", "reconSpace", "matrixSize"]
    lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    enc_size = tuple(int(et_query(root, enc + [ax])) for ax in "xyz")
    recon_size = tuple(int(et_query(root, rec + [ax])) for ax in "xyz")
    center = int(et_query(root, lims + ["center"]))
    maximum = int(et_query(root, lims + ["maximum"])) + 1
    padding_left = enc_size[1] // 2 - center
    return {
        "padding_left": padding_left,
        "padding_right": padding_left + maximum,
        "encoding_size": enc_size,
        "recon_size": recon_size,
    }


def inspect_volume(path: Path, challenge: str) -> Volume:
    """Open and validate one fastMRI file; raise :class:`DataError` with the reason."""
    key = recons_key(challenge)
    ndim = 4 if challenge == "multicoil" else 3
    try:
        hf = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with hf:
        if "kspace" not in hf:
            raise DataError(f"{path}: no 'kspace' dataset (keys: {sorted(hf.keys())})")
        kspace = hf["kspace"]
        if not isinstance(kspace, h5py.Dataset):
            raise DataError(f"{path}: 'kspace' is not a dataset")
        if kspace.ndim != ndim:
            raise DataError(
                f"{path}: 'kspace' has shape {kspace.shape}; {challenge} expects {ndim} dims "
                f"({'slices, coils, rows, cols' if ndim == 4 else 'slices, rows, cols'})"
            )
        if not np.issubdtype(kspace.dtype, np.complexfloating):
            raise DataError(f"{path}: 'kspace' has dtype {kspace.dtype}, expected complex")
        if kspace.shape[0] == 0 or 0 in kspace.shape:
            raise DataError(f"{path}: 'kspace' is empty, shape {kspace.shape}")
        check_dataset_size(path, "kspace", kspace, sides=2)
        if "ismrmrd_header" not in hf:
            raise DataError(f"{path}: no 'ismrmrd_header' dataset")
        header = hf["ismrmrd_header"]
        if (
            not isinstance(header, h5py.Dataset)
            or max(header.id.get_storage_size(), header.size * header.dtype.itemsize)
            > MAX_HEADER_BYTES
        ):
            raise DataError(f"{path}: 'ismrmrd_header' is not a header of at most 16 MB")
        try:
            metadata = parse_header(header[()])
        except (etree.ParseError, TypeError, ValueError, AttributeError) as err:
            raise DataError(f"{path}: ISMRMRD header does not parse ({err})") from None
        num_slices, *slice_shape = kspace.shape
        check_header(path, metadata, slice_shape[-1])
        has_target = key in hf
        if has_target:
            target = hf[key]
            if not isinstance(target, h5py.Dataset) or target.ndim != 3:
                raise DataError(f"{path}: '{key}' is not a (slices, rows, cols) dataset")
            check_dataset_size(path, key, target, sides=2)
            if target.shape[0] != num_slices:
                raise DataError(
                    f"{path}: '{key}' has {target.shape[0]} slices, 'kspace' has {num_slices}"
                )
        mask = None
        if "mask" in hf:
            if getattr(hf["mask"], "shape", None) != (slice_shape[-1],):
                shape = getattr(hf["mask"], "shape", None)
                raise DataError(f"{path}: 'mask' has shape {shape}, expected ({slice_shape[-1]},)")
            mask = np.asarray(hf["mask"])
        try:
            # Touch the last byte of k-space: a truncated file fails here, not mid-epoch.
            kspace[num_slices - 1, ..., -1:]
        except (OSError, RuntimeError) as err:
            raise DataError(f"{path}: k-space cannot be read, file truncated? ({err})") from None
        metadata.update(check_attrs(path, hf, metadata))
    return Volume(path, num_slices, tuple(slice_shape), metadata, has_target, mask)


def list_h5(root: str | os.PathLike) -> list[Path]:
    """The ``*.h5`` files of a folder, sorted; a clear error when the folder is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix == ".h5" and p.is_file())
    if not files:
        raise FileNotFoundError(f"data folder {root} holds no .h5 files")
    return files


def inspect_volumes(
    files: Iterable[Path], challenge: str
) -> tuple[list[Volume], list[tuple[Path, str]]]:
    """Validate every file: the good volumes, and ``(path, reason)`` for each bad one."""
    volumes, bad = [], []
    for path in files:
        try:
            volumes.append(inspect_volume(path, challenge))
        except DataError as err:
            bad.append((path, str(err).removeprefix(f"{path}: ")))
    return volumes, bad


def scan_volumes(
    files: Iterable[Path], challenge: str, skip_bad_files: bool = False
) -> list[Volume]:
    """Validate every file; raise one :class:`BadFilesError` naming all bad ones, or skip them."""
    volumes, bad = inspect_volumes(files, challenge)
    if bad and not skip_bad_files:
        raise BadFilesError(bad)
    for path, reason in bad:
        log.warning("skipping %s: %s", path, reason)
    if not volumes:
        raise DataError("no usable fastMRI volumes among " + ", ".join(str(p) for p, _ in bad))
    return volumes


class SliceDataset(torch.utils.data.Dataset):
    """Slices of fastMRI volumes; without a transform, items equal fastMRI's SliceDataset.

    Args:
        volumes: a folder of ``.h5`` files, or volumes from :func:`scan_volumes`.
        challenge: "singlecoil" or "multicoil".
        transform: called as fastMRI's transforms are:
            ``transform(kspace, mask, target, attrs, fname, slice_num)``.
        skip_bad_files: warn about and skip unusable files instead of raising.
        adjacent_slices: N > 0 reads each slice with its N neighbours on either side:
            k-space (2N + 1, *slice_shape), the slice itself in the middle, the edge
            slice repeated at the volume's ends (the target stays the middle slice's).
        max_open_files: HDF5 handles kept open per process (each loader worker has its
            own), the least recently read closed first: a folder of thousands of volumes
            stays within the system's open-file limit. 0: no cap.
    """

    def __init__(
        self,
        volumes: str | os.PathLike | Sequence[Volume],
        challenge: str,
        transform: Callable | None = None,
        skip_bad_files: bool = False,
        adjacent_slices: int = 0,
        max_open_files: int = 128,
    ):
        check_challenge(challenge)
        if adjacent_slices < 0:
            raise ValueError(f"data.adjacent_slices must be >= 0, got {adjacent_slices}")
        if max_open_files < 0:
            raise ValueError(f"data.max_open_files must be >= 0 (0: no cap), got {max_open_files}")
        self.max_open_files = max_open_files
        self.adjacent_slices = adjacent_slices
        if isinstance(volumes, (str, os.PathLike)):
            volumes = scan_volumes(list_h5(volumes), challenge, skip_bad_files)
        self.volumes = list(volumes)
        self.challenge = challenge
        self.recons_key = recons_key(challenge)
        self.transform = transform
        self.index = [(v, s) for v, vol in enumerate(self.volumes) for s in range(vol.num_slices)]
        self._files: OrderedDict[Path, h5py.File] = OrderedDict()  # least recent first
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        # Open HDF5 handles never cross a process boundary (spawned workers, DDP).
        state = self.__dict__.copy()
        state["_files"] = OrderedDict()
        return state

    def _open(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # forked worker: the parent's handles are not ours
            self._files, self._pid = OrderedDict(), os.getpid()
        hf = self._files.get(path)
        if hf is not None:
            self._files.move_to_end(path)
            return hf
        while self.max_open_files and len(self._files) >= self.max_open_files:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        try:
            hf = self._files[path] = h5py.File(path, "r")
        except OSError as err:  # moved, deleted or unreadable since the folder was scanned
            raise DataError(f"{path}: cannot open ({err})") from None
        return hf

    def read(self, i: int) -> tuple:
        """The raw slice ``(kspace, mask, target, attrs, fname, slice_num)`` of item ``i``."""
        v, slice_num = self.index[i]
        vol = self.volumes[v]
        hf = self._open(vol.path)
        try:
            kspace = self._read_kspace(hf["kspace"], slice_num, vol.num_slices)
            target = hf[self.recons_key][slice_num] if vol.has_target else None
        except (OSError, KeyError) as err:
            raise DataError(f"{vol.path}: slice {slice_num}: read failed ({err})") from None
        mask = None if vol.mask is None else vol.mask.copy()
        return kspace, mask, target, dict(vol.metadata), vol.path.name, slice_num

    def _read_kspace(self, kspace: h5py.Dataset, slice_num: int, num_slices: int) -> np.ndarray:
        n = self.adjacent_slices
        if n == 0:
            return kspace[slice_num]
        # One contiguous read of the neighbours that exist; the edge slice is repeated.
        lo, hi = max(0, slice_num - n), min(num_slices, slice_num + n + 1)
        block = kspace[lo:hi]
        wanted = np.clip(np.arange(slice_num - n, slice_num + n + 1), 0, num_slices - 1)
        return block[wanted - lo]

    def __getitem__(self, i: int):
        sample = self.read(i)
        return sample if self.transform is None else self.transform(*sample)

    def slices_by_volume(self) -> list[list[int]]:
        """Item indices grouped by volume, in order (for volume-wise sampling)."""
        groups: list[list[int]] = [[] for _ in self.volumes]
        for i, (v, _) in enumerate(self.index):
            groups[v].append(i)
        return groups
