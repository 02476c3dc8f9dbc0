"""Compressed sensing (ESPIRiT + L1-wavelet): the classical row of every table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kspace_mim.config import compose
from kspace_mim.data.synthesize import synthesize
from kspace_mim.metrics import evaluate_folders
from kspace_mim.models.cs import centre_maps, read_cfl, write_cfl
from kspace_mim.reconstruct import run as reconstruct


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    """Two fully sampled brain volumes (real anatomy, 8 coils, 48 x 48 images)."""
    root = tmp_path_factory.mktemp("brain")
    synthesize(
        root,
        split="val",
        volumes=2,
        slices=2,
        coils=8,
        size=48,
        anatomy="colin27",
        progress=False,
    )
    return root


def recon(brain, out, *overrides):
    cfg = compose(
        [f"input={brain}", f"output={out}", "mask=equispaced4x", *overrides], "reconstruct"
    )
    assert reconstruct(cfg) == 0
    return evaluate_folders(brain, out, "multicoil")


@pytest.mark.parametrize("maps", ["espirit", "centre"])
def test_cs_beats_zero_filling_clearly_on_real_anatomy(brain, tmp_path, maps):
    zero = recon(brain, tmp_path / "zf", "model=zero_filled")
    cs = recon(brain, tmp_path / "cs", "model=cs", "model.lamda=0.003", f"model.maps={maps}")
    assert cs["ssim"] > zero["ssim"] + 0.04 and cs["psnr"] > zero["psnr"] + 2
    settings = json.loads((tmp_path / "cs" / "reconstruct.json").read_text())
    assert settings["model"]["_target_"] == "kspace_mim.models.cs.CompressedSensing"
    assert settings["model"]["lamda"] == 0.003 and settings["model"]["maps"] == maps
    assert len(settings["volumes"]) == 2


def test_lamda_moves_the_result(brain, tmp_path):
    weak = recon(brain, tmp_path / "a", "model=cs", "model.lamda=0.0", "model.max_iter=20")
    strong = recon(brain, tmp_path / "b", "model=cs", "model.lamda=0.3", "model.max_iter=20")
    assert strong["ssim"] != pytest.approx(weak["ssim"], abs=1e-3)


def test_bad_settings_are_errors(brain, tmp_path):
    for override, match in [
        ("model.maps=sense", "espirit or centre"),
        ("model.backend=matlab", "backend must be one of"),
        ("model.lamda=-1", "lamda >= 0"),
    ]:
        cfg = compose(
            [
                f"input={brain}",
                f"output={tmp_path / override.replace('=', '_')}",
                "model=cs",
                override,
            ],
            "reconstruct",
        )
        with pytest.raises(ValueError, match=match):
            reconstruct(cfg)
    if shutil.which("bart") is None:
        cfg = compose(
            [f"input={brain}", f"output={tmp_path}/bart", "model=cs", "model.backend=bart"],
            "reconstruct",
        )
        with pytest.raises(FileNotFoundError, match="bart"):
            reconstruct(cfg)


def test_centre_maps_are_unit_root_sum_of_squares():
    rng = np.random.default_rng(0)
    y = (rng.normal(size=(4, 32, 20)) + 1j * rng.normal(size=(4, 32, 20))).astype(np.complex64)
    maps = centre_maps(y, 6)
    np.testing.assert_allclose(np.sqrt((np.abs(maps) ** 2).sum(0)), 1, rtol=1e-4)


def test_bart_files_round_trip(tmp_path):
    """BART's .cfl / .hdr pair (column-major complex64) as the bart command reads it."""
    array = (np.arange(24) + 1j * np.arange(24)[::-1]).reshape(2, 3, 1, 4).astype(np.complex64)
    write_cfl(tmp_path / "x", array)
    dims = (tmp_path / "x.hdr").read_text().splitlines()[1].split()
    assert dims[:4] == ["2", "3", "1", "4"] and len(dims) == 16
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), array)
    raw = np.fromfile(tmp_path / "x.cfl", dtype=np.complex64)
    assert raw[1] == array[1, 0, 0, 0]  # the first axis varies fastest


@pytest.mark.skipif(shutil.which("bart") is None, reason="the bart command is not installed")
def test_bart_backend_beats_zero_filling(brain, tmp_path):
    zero = recon(brain, tmp_path / "zf", "model=zero_filled")
    cs = recon(brain, tmp_path / "cs", "model=cs", "model.backend=bart", "model.lamda=0.01")
    assert cs["ssim"] > zero["ssim"] + 0.04
