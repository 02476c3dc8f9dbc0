"""Compressed sensing: the classical baseline between zero-filling and the networks.

ESPIRiT coil maps from the acquired centre columns, then L1-wavelet regularised
SENSE (sigpy's ``EspiritCalib`` and ``L1WaveletRecon``, pure Python), or BART's
``ecalib`` + ``pics`` as fastMRI's CS example runs them (``backend=bart``, when the
``bart`` command is installed). Nothing is trained; ``lamda`` (relative to the
zero-filled image's maximum, so one value fits slices of any scale) is chosen on the
validation split (``experiment=results_cs`` sweeps them, and ``python -m kspace_mim.study results``
chooses per acceleration).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kspace_mim.data.transforms import KspaceSample
from kspace_mim.models.family import NetFacts, ReconOutput, centre_slice, unrolled_output
from kspace_mim.physics import fft2c, ifft2c, rss

BACKENDS = ("sigpy", "bart")


class CompressedSensing(nn.Module):
    """ESPIRiT + L1-wavelet CS, slice by slice on the CPU.

    Args:
        lamda: L1-wavelet weight, relative to the slice's zero-filled RSS maximum.
        max_iter: iterations of the solver.
        wavelet: pywavelets name (sigpy backend; BART uses its Daubechies wavelet).
        calib_width: the ESPIRiT calibration region's side, at most the slice's fully
            sampled centre columns.
        crop: ESPIRiT's eigenvalue threshold for the maps; 0 keeps them everywhere (the
            default 0.95 zeroed parts of the anatomy on these files, below zero-filling).
        maps: espirit (ESPIRiT on the square calibration region of the centre columns) |
            centre (the centre columns' low-resolution coil images divided by their
            root-sum-of-squares, as E2E-VarNet initialises its maps; needs no
            calibration square, so it also works with 3 centre columns).
        backend: sigpy | bart.
    """

    trainable = False  # nothing learned: validated, never trained

    def __init__(
        self,
        facts: NetFacts | None = None,
        lamda: float = 0.01,
        max_iter: int = 50,
        wavelet: str = "db4",
        calib_width: int = 24,
        crop: float = 0.0,
        backend: str = "sigpy",
        maps: str = "centre",
    ):
        super().__init__()
        self.slices = facts.slices if facts is not None else 1
        if backend not in BACKENDS:
            raise ValueError(f"cs backend must be one of {BACKENDS}, got {backend!r}")
        if maps not in ("espirit", "centre"):
            raise ValueError(f"cs maps must be espirit or centre, got {maps!r}")
        if backend == "bart" and shutil.which("bart") is None:
            raise FileNotFoundError(
                "cs backend=bart: the `bart` command is not installed (apt-get install bart, "
                "or use backend=sigpy)"
            )
        if lamda < 0 or max_iter < 1 or calib_width < 2:
            raise ValueError(
                f"cs: lamda >= 0, max_iter >= 1, calib_width >= 2; got {lamda}, {max_iter}, "
                f"{calib_width}"
            )
        self.lamda, self.max_iter, self.wavelet = lamda, max_iter, wavelet
        self.calib_width, self.crop, self.backend = calib_width, crop, backend
        self.maps = maps

    def reconstruct(self, batch: KspaceSample) -> ReconOutput:
        """masked_kspace (B, C, H, W) complex -> coil k-space of the CS image."""
        centre = centre_slice(batch, self.slices)
        kspace = torch.stack(
            [
                self.solve(k, int(n))
                for k, n in zip(
                    centre.masked_kspace.cpu(), centre.num_low_frequencies, strict=False
                )
            ]
        ).to(centre.masked_kspace.device)
        return unrolled_output(centre, kspace, 1)

    def solve(self, masked: torch.Tensor, num_low: int) -> torch.Tensor:
        """One slice: masked k-space (C, H, W) complex -> F(S x), x the CS image."""
        y = masked.numpy().astype(np.complex64)
        peak = float(rss(ifft2c(masked)).max()) or 1.0
        y = y / peak  # lamda relative to the zero-filled maximum
        calib = max(2, min(self.calib_width, num_low or self.calib_width))
        solver = self._sigpy if self.backend == "sigpy" else self._bart
        image, maps = solver(y, calib)
        coil_images = torch.from_numpy(maps * image[None]).to(torch.complex64)
        return fft2c(coil_images) * peak

    def _sigpy(self, y: np.ndarray, calib: int) -> tuple[np.ndarray, np.ndarray]:
        import sigpy.mri as mr

        if self.maps == "centre":
            maps = centre_maps(y, calib)
        else:
            kernel = espirit_kernel(calib)
            maps = mr.app.EspiritCalib(
                y, calib_width=calib, kernel_width=kernel, crop=self.crop, show_pbar=False
            ).run()
        weights = (np.abs(y).sum(axis=0) > 0).astype(np.float32)  # the sampling mask
        image = mr.app.L1WaveletRecon(
            y,
            maps,
            self.lamda,
            weights=weights,
            wave_name=self.wavelet,
            max_iter=self.max_iter,
            show_pbar=False,
        ).run()
        return np.asarray(image), np.asarray(maps)

    def _bart(self, y: np.ndarray, calib: int) -> tuple[np.ndarray, np.ndarray]:
        # BART wants (x, y, z, coils) with the coil axis fourth; its FFT is centred and
        # unitary with -S (fastMRI's example passes the same flags).
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            write_cfl(tmp / "ksp", np.transpose(y, (1, 2, 0))[:, :, None, :])
            calibrate = f"ecalib -d0 -m1 -c{self.crop} -r{calib} -k{espirit_kernel(calib)}"
            bart(calibrate, tmp / "ksp", tmp / "maps")
            reg = f"-R W:7:0:{self.lamda}"
            bart(f"pics -d0 -S {reg} -i {self.max_iter}", tmp / "ksp", tmp / "maps", tmp / "x")
            coils, rows, cols = y.shape
            maps = np.transpose(read_cfl(tmp / "maps").reshape(rows, cols, coils), (2, 0, 1))
            image = read_cfl(tmp / "x").reshape(rows, cols)
        return image, maps


def espirit_kernel(calib: int) -> int:
    """ESPIRiT's kernel side: its default 6, smaller when the calibration square is too
    small to slide it (4x on a 74-column grid leaves 6 centre columns, 8x 3)."""
    return max(2, min(6, calib - 2))


def centre_maps(y: np.ndarray, num_low: int) -> np.ndarray:
    """Coil maps (C, H, W) from the ``num_low`` centre columns of y (C, H, W): their
    low-resolution coil images over the root-sum-of-squares."""
    cols = y.shape[-1]
    low = np.zeros_like(y)
    start = (cols - num_low + 1) // 2
    low[..., start : start + num_low] = y[..., start : start + num_low]
    images = ifft2c(torch.from_numpy(low)).numpy()
    norm = np.sqrt((np.abs(images) ** 2).sum(axis=0, keepdims=True))
    return images / np.maximum(norm, 1e-12 * norm.max())


def bart(command: str, *files: Path) -> None:
    subprocess.run(["bart", *command.split(), *map(str, files)], check=True, capture_output=True)


def write_cfl(name: Path, array: np.ndarray) -> None:
    """BART's file pair: ``.hdr`` (dimensions) and ``.cfl`` (complex64, column-major)."""
    dims = list(array.shape) + [1] * (16 - array.ndim)
    name.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asfortranarray(array.astype(np.complex64)).T.tofile(name.with_suffix(".cfl"))


def read_cfl(name: Path) -> np.ndarray:
    dims = [int(d) for d in name.with_suffix(".hdr").read_text().splitlines()[1].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(name.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")
