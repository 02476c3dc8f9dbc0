"""reconstruct: submission files, the mask=none invariant, bad volumes reported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import fastmri
import h5py
import numpy as np
import pytest
import torch
from fastmri.data.transforms import center_crop, to_tensor

from kspace_mim.config import ConfigError, compose
from kspace_mim.data.synthesize import synthesize
from kspace_mim.metrics import evaluate_folders
from kspace_mim.reconstruct import run as reconstruct
from kspace_mim.train import run as train


def train_tiny(data_root, run_dir, *extra):
    """A tiny model trained on the multicoil folders (32x32 grid): a checkpoint to use."""
    overrides = [
        f"data.train_path={data_root}/multicoil_train",
        f"data.val_path={data_root}/multicoil_val",
        "data=tiny",
        "model.size=tiny",
        *extra,
    ]
    return train(compose(overrides), run_dir)


def recon_cfg(*overrides):
    return compose(list(overrides), config_name="reconstruct")


def test_zero_filled_equals_rss_of_masked_kspace(data_root, tmp_path, read_h5):
    """Test files (own masks, two widths): output = crop(rss(ifft2c(kspace)))."""
    out = tmp_path / "zf"
    cfg = recon_cfg(
        "model=zero_filled", f"input={data_root}/multicoil_test", f"output={out}", "mask=random0.6"
    )  # the files' own masks win
    assert reconstruct(cfg) == 0
    for path in sorted((data_root / "multicoil_test").glob("*.h5")):
        kspace = read_h5(path, "kspace")
        expected = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(to_tensor(kspace))), dim=1)
        expected = center_crop(expected, (32, 32)).numpy()
        ours = read_h5(out / path.name)
        assert ours.dtype == np.float32 and ours.shape == (3, 32, 32)
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * expected.max())


@pytest.mark.parametrize(
    "folder, challenge", [("multicoil_val", "multicoil"), ("singlecoil_train", "singlecoil")]
)
def test_mask_none_returns_stored_target(data_root, tmp_path, folder, challenge, read_h5):
    cfg = recon_cfg(
        "model=zero_filled",
        f"input={data_root}/{folder}",
        f"output={tmp_path}",
        "mask=none",
        f"challenge={challenge}",
    )
    assert reconstruct(cfg) == 0
    key = "reconstruction_rss" if challenge == "multicoil" else "reconstruction_esc"
    for path in sorted((data_root / folder).glob("*.h5")):
        target = read_h5(path, key)
        np.testing.assert_allclose(
            read_h5(tmp_path / path.name), target, rtol=1e-4, atol=1e-5 * target.max()
        )
    metrics = evaluate_folders(data_root / folder, tmp_path, challenge)
    assert metrics["ssim"] > 0.9999 and metrics["nmse"] < 1e-8


def write_foreign_volume(path, coils: int = 3, slices: int = 2, rows: int = 48, cols: int = 40):
    """A fastMRI-layout file written with numpy and h5py alone (not by this package): smooth
    random coil images, their centred orthonormal FFT, the RSS target cropped to the recon
    size, and a hand-written ISMRMRD header with 2x readout oversampling."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    obj = (x**2 / 0.5 + y**2 / 0.3 < 1) * (1 + 0.3 * np.cos(6 * x))
    shift = np.fft.ifftshift
    images = np.stack(
        [
            [obj * np.exp(-((x - c / coils) ** 2)) * np.exp(1j * (s + c)) for c in range(coils)]
            for s in range(slices)
        ]
    ) + 0.01 * rng.standard_normal((slices, coils, rows, cols))
    kspace = np.fft.fftshift(np.fft.fft2(shift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    recon = (rows // 2, cols - 8)
    coil_images = np.fft.fftshift(
        np.fft.ifft2(shift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(1))
    r0, c0 = (rows - recon[0]) // 2, (cols - recon[1]) // 2
    target = rss[:, r0 : r0 + recon[0], c0 : c0 + recon[1]].astype(np.float32)
    header = (
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
        f"<encodedSpace><matrixSize><x>{rows}</x><y>{cols}</y><z>1</z></matrixSize></encodedSpace>"
        f"<reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize>"
        "</reconSpace><encodingLimits><kspace_encoding_step_1><minimum>0</minimum>"
        f"<maximum>{cols - 1}</maximum><center>{cols // 2}</center></kspace_encoding_step_1>"
        "</encodingLimits></encoding></ismrmrdHeader>"
    )
    with h5py.File(path, "w") as hf:
        hf["kspace"] = kspace.astype(np.complex64)
        hf["reconstruction_rss"] = target
        hf["ismrmrd_header"] = header.encode()
        hf.attrs["max"] = float(target.max())
    return target


def test_mask_none_returns_the_target_of_files_we_did_not_write(tmp_path, read_h5):
    """The mask=none invariant on a file written with numpy and h5py alone (odd sizes,
    a recon size that crops both axes): the pipeline's image is the file's target."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    target = write_foreign_volume(folder / "file1.h5")
    out = tmp_path / "out"
    cfg = recon_cfg("model=zero_filled", f"input={folder}", f"output={out}", "mask=none")
    assert reconstruct(cfg) == 0
    ours = read_h5(out / "file1.h5")
    assert ours.shape == target.shape == (2, 24, 32)
    np.testing.assert_allclose(ours, target, rtol=1e-4, atol=1e-5 * target.max())


@pytest.mark.slow
def test_bad_volumes_reported_good_ones_written(copy_folder, tmp_path):
    folder = copy_folder("multicoil_val")
    good = sorted(folder.glob("*.h5"))
    (folder / "broken.h5").write_text("not hdf5")
    shutil.copy(good[0], folder / "nan.h5")
    with h5py.File(folder / "nan.h5", "a") as hf:
        k = hf["kspace"][1]
        k[0, 0, 0] = np.inf
        hf["kspace"][1] = k
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "kspace_mim.reconstruct",
        "model=zero_filled",
        f"input={folder}",
        f"output={out}",
        "figures=true",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.h5: not a readable HDF5 file" in result.stderr
    assert "nan.h5" in result.stderr and "slice 1: k-space contains NaN or Inf" in result.stderr
    assert sorted(p.name for p in out.glob("*.h5")) == [p.name for p in good]
    assert len(list((out / "figures").glob("*.png"))) == 2
    # the output folder is now not empty: refused without overwrite=true
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
def test_checkpoint_on_other_grids_widths_and_coils(data_root, tmp_path, read_h5):
    """A model trained on a 32x32, 4-coil grid runs on 48x48 volumes with 6 coils and on
    test files with their own widths; evaluate then scores it from the command line."""
    train_tiny(data_root, tmp_path / "run", "trainer.max_steps=2")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    other = tmp_path / "other"
    synthesize(other, "multicoil", "val", volumes=1, slices=2, coils=6, size=48, progress=False)
    out = tmp_path / "pred_other"
    assert reconstruct(recon_cfg(f"ckpt={ckpt}", f"input={other}", f"output={out}")) == 0
    assert read_h5(next(out.glob("*.h5"))).shape == (2, 48, 48)
    out_test = tmp_path / "pred_test"
    cfg = recon_cfg(f"ckpt={ckpt}", f"input={data_root}/multicoil_test", f"output={out_test}")
    assert reconstruct(cfg) == 0
    assert all(read_h5(p).shape == (3, 32, 32) for p in out_test.glob("*.h5"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kspace_mim.evaluate",
            f"target={other}",
            f"predictions={out}",
            f"output={tmp_path / 'm.json'}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"ssim", "psnr", "nmse", "volumes", "acquisitions"} <= metrics.keys()
    assert "SSIM" in result.stdout
    assert torch.isfinite(torch.tensor(metrics["psnr"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=varnet"],
        ["model=unrolled"],
        ["model=unrolled", "data.adjacent_slices=1"],
        ["model=unet", "model.size=tiny", "data.adjacent_slices=1"],
    ],
    ids=["varnet", "unrolled", "unrolled-adjacent", "unet-adjacent"],
)
def test_unrolled_families_reconstruct_test_files(overrides, data_root, tmp_path, read_h5):
    """VarNet, the unrolled network and models on adjacent slices go through reconstruct
    like every model: test files with their own masks (a checkpoint trained on stacks of
    slices reads stacks), submission files of the recon size."""
    train_tiny(
        data_root,
        tmp_path / "run",
        *overrides,
        "trainer.max_steps=1",
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "pred"
    cfg = recon_cfg(f"ckpt={ckpt}", f"input={data_root}/multicoil_test", f"output={out}")
    assert reconstruct(cfg) == 0
    files = sorted(out.glob("*.h5"))
    assert len(files) == 2
    assert all(read_h5(p).shape == (3, 32, 32) and np.isfinite(read_h5(p)).all() for p in files)


def test_varnet_reconstructs_other_coil_counts_on_its_native_grid(data_root, tmp_path, read_h5):
    """A VarNet trained on 4-coil volumes (its recipe: the native grid) reconstructs 4- and
    6-coil volumes with their own coils: finite images of the target's size, and on the
    trained coil count the validation metrics of training."""
    run_dir = tmp_path / "run"
    metrics = train_tiny(
        data_root,
        run_dir,
        "model=varnet",
        "model.num_cascades=2",
        "model.pools=2",
        "trainer.max_steps=2",
    )
    out = tmp_path / "out"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert (
        reconstruct(recon_cfg(f"ckpt={ckpt}", f"input={data_root}/mixed_coils", f"output={out}"))
        == 0
    )
    for path in sorted((data_root / "mixed_coils").glob("*.h5")):
        image, target = read_h5(out / path.name), read_h5(path, "reconstruction_rss")
        assert image.shape == target.shape and np.isfinite(image).all()
    again = tmp_path / "val"
    assert (
        reconstruct(
            recon_cfg(f"ckpt={ckpt}", f"input={data_root}/multicoil_val", f"output={again}")
        )
        == 0
    )
    scores = evaluate_folders(data_root / "multicoil_val", again, "multicoil")
    assert scores["ssim"] == pytest.approx(metrics["ssim"], rel=1e-4)


def test_overwrite_never_writes_through_a_link(copy_folder, tmp_path):
    """The split's test_full/ holds links to the fully sampled originals: reconstructing
    into such a folder with overwrite=true refuses the link; the original is untouched."""
    folder = copy_folder("multicoil_test")
    original = next(folder.glob("*.h5"))
    before = original.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    (out / original.name).symlink_to(original)
    cfg = recon_cfg("model=zero_filled", f"input={folder}", f"output={out}", "overwrite=true")
    with pytest.raises(FileExistsError, match="symbolic link.*refusing to write through"):
        reconstruct(cfg)
    assert original.read_bytes() == before


def test_outputs_are_replaced_atomically(data_root, tmp_path, monkeypatch):
    """A write that dies half-way leaves the previous file whole and no temporary."""
    import kspace_mim.files as files

    out = tmp_path / "out"
    cfg = recon_cfg("model=zero_filled", f"input={data_root}/multicoil_test", f"output={out}")
    assert reconstruct(cfg) == 0
    written = {p.name: p.read_bytes() for p in out.iterdir()}

    def dies(path, fill):
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")

    monkeypatch.setattr("kspace_mim.inference.write_h5", dies)
    again = recon_cfg(
        "model=zero_filled", f"input={data_root}/multicoil_test", f"output={out}", "overwrite=true"
    )
    with pytest.raises(OSError, match="disk full"):
        reconstruct(again)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written


@pytest.mark.slow
def test_the_jobs_own_test_equals_reconstruct_then_evaluate(data_root, tmp_path, small_overrides):
    """``evaluation.test_masks``: the held-out test inside the training job, once per mask,
    gives the per-volume metrics that ``reconstruct`` (same checkpoint, same mask) and
    ``evaluate`` give, so a study's tables need no separate reconstruction pass."""
    folder = data_root / "multicoil_val"
    cfg = compose(
        small_overrides(
            folder,
            f"data.test_path={folder}",
            "evaluation.test_masks=[equispaced4x,equispaced8x]",
        )
    )
    metrics = train(cfg, tmp_path / "run")
    assert set(metrics["tests"]) == {"equispaced4x", "equispaced8x"} and "test" not in metrics
    four, eight = (metrics["tests"][m] for m in ("equispaced4x", "equispaced8x"))
    assert four["ssim"] > eight["ssim"]  # fewer samples, a worse image
    for name, inside in metrics["tests"].items():
        out = tmp_path / name
        status = reconstruct(
            compose(
                [
                    f"ckpt='{metrics['checkpoint']}'",
                    f"input={folder}",
                    f"output={out}",
                    f"mask={name}",
                ],
                "reconstruct",
            )
        )
        assert status == 0
        outside = evaluate_folders(folder, out, "multicoil")
        assert set(outside["volumes"]) == set(inside["volumes"])
        for volume, scores in outside["volumes"].items():
            for metric in ("ssim", "psnr", "nmse"):
                assert scores[metric] == pytest.approx(inside["volumes"][volume][metric], rel=1e-4)
    with pytest.raises(ConfigError, match="evaluation.test_masks: no mask option 'equispaced5x'"):
        bad = ["evaluation.test_masks=[equispaced5x]", f"data.test_path={folder}"]
        train(compose(small_overrides(folder, *bad)), tmp_path / "bad")


def test_reconstruct_runs_in_the_precision_its_run_trained_in(data_root, tmp_path, read_h5):
    """precision=null reads the run's trainer.precision beside its checkpoints (bf16
    autocast for a bf16 run, float32 otherwise); precision= overrides it; the choice is
    recorded in reconstruct.json; a name Lightning does not use is refused."""
    train_tiny(data_root, tmp_path / "run", "trainer.max_steps=1")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    source = f"input={data_root}/multicoil_val"

    def images(name: str, *extra: str) -> np.ndarray:
        out = tmp_path / name
        assert reconstruct(recon_cfg(f"ckpt={ckpt}", source, f"output={out}", *extra)) == 0
        used = json.loads((out / "reconstruct.json").read_text())["precision"]
        return np.stack([read_h5(p) for p in sorted(out.glob("*.h5"))]), used

    full, used = images("own")
    assert used == "32-true"
    bf16, used = images("bf16", "precision=bf16-mixed")
    assert used == "bf16-mixed"
    assert not np.array_equal(full, bf16)  # the network really ran in bf16
    np.testing.assert_allclose(bf16, full, atol=0.05 * full.max())
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("precision: 32-true", "precision: bf16-mixed"))
    again, used = images("own_bf16")
    assert used == "bf16-mixed" and np.array_equal(again, bf16)
    with pytest.raises(ValueError, match="precision='fp8'"):
        images("bad", "precision=fp8")
