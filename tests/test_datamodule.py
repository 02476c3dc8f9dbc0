"""The DataModule from the real Hydra config: splits, loaders, DDP-safe evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
import torch
from hydra.errors import InstantiationException

from kspace_mim.config import compose
from kspace_mim.data.datamodule import FastMRIDataModule, draw_volumes
from kspace_mim.data.mri_data import BadFilesError, Volume
from kspace_mim.data.samplers import VolumeBatchSampler, assign_volumes
from kspace_mim.data.transforms import KspaceSample
from kspace_mim.train import build_datamodule, run


def make_datamodule(overrides):
    return build_datamodule(compose(overrides))


def model_batches(dm, loader):
    """What a step sees: each loader batch finished by the DataModule's device hook."""
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def test_from_config_with_val_folder(data_root):
    dm = make_datamodule(
        [
            f"data.train_path={data_root}/multicoil_train",
            f"data.val_path={data_root}/multicoil_val",
            f"data.test_path={data_root}/multicoil_test",
            "data=tiny",
            "data.num_workers=1",
            "data.batch_size=2",
            "data.val_batch_size=2",
            "mask=equispaced4x",
            "augmentation=flip",
        ]
    )
    assert isinstance(dm, FastMRIDataModule)
    dm.setup("fit")
    dm.setup("test")
    batch = model_batches(dm, [next(iter(dm.train_dataloader()))])[0]
    assert isinstance(batch, KspaceSample)
    assert batch.masked_kspace.shape == (2, 4, 32, 32)
    assert batch.mask.shape == (2, 1, 32, 32) and batch.target.shape == (2, 32, 32)
    assert len(dm.train_dataloader()) == 15 // 2  # drop_last in training
    val_batches = model_batches(dm, dm.val_dataloader())
    assert sum(len(b.fname) for b in val_batches) == 6
    for b in val_batches + model_batches(dm, dm.test_dataloader()):
        assert len(set(b.fname)) == 1  # a batch never mixes volumes
    test_batch = model_batches(dm, dm.test_dataloader())[0]
    assert test_batch.target.numel() == 0


def test_train_folder_alone_splits_80_20_by_volume(data_root):
    dm = make_datamodule(
        [
            f"data.train_path={data_root}/multicoil_train",
            "data.val_path=null",
            "data=tiny",
        ]
    )
    dm.setup("fit")
    train = {v.path.name for v in dm.datasets["train"].volumes}
    val = {v.path.name for v in dm.datasets["val"].volumes}
    assert len(train) == 4 and len(val) == 1 and not train & val
    # the split is seeded: the same every time
    dm2 = make_datamodule(
        [f"data.train_path={data_root}/multicoil_train", "data.val_path=null", "data=tiny"]
    )
    dm2.setup("fit")
    assert {v.path.name for v in dm2.datasets["val"].volumes} == val


def test_mixed_coils_compressed_to_virtual_coils(data_root):
    """Mixed coil counts are the model's question (tests/test_grid_coils.py); compressed,
    every batch has the virtual count."""
    overrides = [
        f"data.train_path={data_root}/mixed_coils",
        "data.val_path=null",
        "data=tiny",
    ]
    assert make_datamodule(overrides).facts().coil_counts == (4, 6)
    dm = make_datamodule(overrides + ["data.virtual_coils=4", "data.batch_size=2"])
    dm.setup("fit")
    for batch in model_batches(dm, dm.train_dataloader()):
        assert batch.masked_kspace.shape[1] == 4  # 4- and 6-coil volumes, one batch shape


def test_singlecoil_from_config(data_root):
    dm = make_datamodule(
        [
            f"data.train_path={data_root}/singlecoil_train",
            "data.val_path=null",
            "data.challenge=singlecoil",
            "data=tiny",
            "mask=random0.6",
        ]
    )
    dm.setup("fit")
    batch = model_batches(dm, dm.val_dataloader())[0]
    assert batch.masked_kspace.shape[1] == 1


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_sampler_gives_every_slice_once(world):
    sizes = [5, 3, 8, 2, 7]
    start = [sum(sizes[:v]) for v in range(len(sizes))]
    groups = [list(range(s, s + n)) for s, n in zip(start, sizes, strict=True)]
    seen = []
    for rank in range(world):
        for batch in VolumeBatchSampler(groups, batch_size=3, num_replicas=world, rank=rank):
            assert len(batch) <= 3
            assert len({next(v for v, g in enumerate(groups) if i in g) for i in batch}) == 1
            seen += batch
    assert sorted(seen) == list(range(sum(sizes)))
    loads = [sum(sizes[v] for v in vols) for vols in assign_volumes(sizes, world)]
    assert max(loads) - min(loads) <= max(sizes)


def test_ddp_ranks_of_the_datamodule_cover_val_once(data_root):
    seen = []
    for rank in range(2):
        dm = make_datamodule(
            [
                f"data.train_path={data_root}/multicoil_train",
                f"data.val_path={data_root}/multicoil_val",
                "data=tiny",
            ]
        )
        dm._world = lambda rank=rank: (2, rank)
        dm.setup("fit")
        seen += [
            (f, int(s))
            for b in model_batches(dm, dm.val_dataloader())
            for f, s in zip(b.fname, b.slice_num, strict=True)
        ]
        assert isinstance(dm.train_dataloader().sampler, torch.utils.data.DistributedSampler)
    assert sorted(seen) == sorted(
        {(v.path.name, s) for v in dm.datasets["val"].volumes for s in range(v.num_slices)}
    )


def test_preparing_in_the_loader_or_on_the_device_gives_the_same_batches(data_root):
    overrides = [
        f"data.train_path={data_root}/mixed_coils",
        f"data.val_path={data_root}/mixed_coils",
        "data=tiny",
        "data.virtual_coils=4",
        "data.val_batch_size=2",
        "augmentation=normalize",
    ]
    batches = {}
    for where in ("loader", "device"):
        dm = make_datamodule([*overrides, f"data.prepare_on={where}"])
        dm.setup("fit")
        raw = list(dm.val_dataloader())
        assert isinstance(raw[0], KspaceSample) == (where == "loader")
        batches[where] = model_batches(dm, raw)
    for a, b in zip(batches["loader"], batches["device"], strict=True):
        assert list(a.fname) == list(b.fname) and torch.equal(a.slice_num, b.slice_num)
        for name in ("masked_kspace", "kspace", "target", "scale", "offset", "mask"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="prepare_on must be auto, device or loader"):
        FastMRIDataModule(prepare_on="gpu")


def test_bad_training_files_named_before_training(copy_folder, tmp_path, small_overrides):
    folder = copy_folder("multicoil_train")
    (folder / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (folder / "notes.h5").write_text("not a volume")
    with pytest.raises(BadFilesError, match=r"(?s)2 unusable.*corrupt.h5.*notes.h5"):
        run(compose(small_overrides(folder)), tmp_path / "a")
    assert not (tmp_path / "a" / "checkpoints").exists()  # nothing trained
    metrics = run(compose(small_overrides(folder, "data.skip_bad_files=true")), tmp_path / "b")
    assert metrics["num_volumes"] == 5


def test_preparing_on_the_device_trains_as_in_the_loader(data_root, tmp_path, small_overrides):
    """Lightning's on_after_batch_transfer path (GPU default) trains to the same metrics as
    the CPU default, on batches that mix 4- and 6-coil volumes of different widths."""
    overrides = small_overrides(
        data_root / "mixed_coils", "data.virtual_coils=4", "data.batch_size=3"
    )
    loader = run(compose([*overrides, "data.prepare_on=loader"]), tmp_path / "loader")
    device = run(compose([*overrides, "data.prepare_on=device"]), tmp_path / "device")
    for key in ("ssim", "psnr", "nmse", "kspace_ssim"):
        assert device[key] == pytest.approx(loader[key], rel=1e-4)


def test_only_the_default_synthetic_folders_are_written(tmp_path, monkeypatch):
    from kspace_mim.data import synthesize as synth

    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "train", 2)
    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "val", 1)
    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "test", 1)
    root = tmp_path / "synthetic"
    dm = make_datamodule([f"data.synthetic_root={root}", "data=tiny"])
    facts = dm.facts()  # written on first use, then read
    assert (facts.num_coils, facts.img_size) == (8, (32, 32))
    assert len(list((root / "multicoil_train").glob("*.h5"))) == 2
    assert not (root / "multicoil_train_undersampled4x").exists()  # only where a run reads it
    other = make_datamodule(
        [f"data.synthetic_root={root}", f"data.val_path={tmp_path}/mine", "data=tiny"]
    )
    with pytest.raises(FileNotFoundError, match="data.val_path: data folder .*mine does not exist"):
        other.setup("fit")
    assert not (tmp_path / "mine").exists()
    assert len(list((root / "multicoil_test").glob("*.h5"))) == 1  # with the set
    real = make_datamodule(["data=fastmri_knee", f"data.train_path={tmp_path}/knee_train"])
    with pytest.raises(FileNotFoundError, match="data.train_path"):
        real.setup("fit")  # real data configs never synthesize
    assert not (tmp_path / "knee_train").exists()


def test_the_label_free_copy_of_train_is_written_where_a_run_reads_it(tmp_path, monkeypatch):
    """row=ssdu / row=mim train on the default set's undersampled-only copy of the train
    volumes: written on first use, the same volumes, 4x, no target (fastMRI's test layout)."""
    from kspace_mim.data import synthesize as synth

    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "train", 2)
    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "val", 1)
    monkeypatch.setitem(synth.DEFAULT_VOLUMES, "test", 1)
    root = tmp_path / "synthetic"
    overrides = [
        f"data.synthetic_root={root}",
        "data=tiny",
        "experiment=label_pretrain",
        "row=ssdu",
    ]
    dm = make_datamodule(overrides)
    dm.setup("fit")
    copy = sorted((root / "multicoil_train_undersampled4x").glob("*.h5"))
    assert [p.name for p in copy] == sorted(p.name for p in (root / "multicoil_train").glob("*.h5"))
    with h5py.File(copy[0]) as f:
        assert "reconstruction_rss" not in f and f.attrs["acceleration"] == 4
    assert len(dm.datasets["train"].volumes) == 2


def test_data_people_writes_the_set_split_by_person(tmp_path, monkeypatch):
    """data=people: written on first use under its own root; the held-out test files
    show a person (patient_id) that no train or val file shows."""
    from kspace_mim.data import synthesize as synth

    for split, n in (("train", 2), ("val", 1), ("test", 2)):  # the pool: every slab
        monkeypatch.setitem(synth.DEFAULT_VOLUMES, split, n)
    dm = make_datamodule(
        ["data=people", f"paths.data_dir={tmp_path}", "data.crop_size=32", "supervision=joint"]
    )
    dm.setup("fit")
    root = tmp_path / "people"
    assert dm.synthetic_set == "people" and (root / "multicoil_train").is_dir()
    synth.ensure_synthetic(synth.split_folders(root, "multicoil"), "multicoil", "people")

    def people(folder: str) -> set[str]:
        return {h5py.File(p).attrs["anatomy"] for p in (root / f"multicoil_{folder}").glob("*.h5")}

    assert people("train") == people("val") == {"colin27"}
    assert people("train_undersampled4x") == {"colin27", "mni152"}  # the label-free pool
    assert people("test") == people("test_full") == {"itk"}
    with pytest.raises(InstantiationException, match="data.synthetic_set='nobody'"):
        make_datamodule(["data.synthetic_set=nobody"])
    with pytest.raises(InstantiationException, match="data.people splits"):
        make_datamodule(["+data.people={train: [colin27], val: [mni152], test: [itk]}"])


def test_a_people_folder_of_another_definition_is_refused(tmp_path, monkeypatch):
    """A data=people folder already on disk whose files show other people than the run's
    split holds (an earlier set validated on Colin27, or other data.people) is refused
    before any step, naming the heads; the matching one is used as is."""
    from kspace_mim.data import synthesize as synth

    for split, n in (("train", 1), ("val", 1), ("test", 1), ("pool", 1)):
        monkeypatch.setitem(synth.DEFAULT_VOLUMES, split, n)
    base = ["data=people", f"paths.data_dir={tmp_path}", "data.crop_size=32"]
    make_datamodule(base).setup("fit")  # writes the default split by person
    val = tmp_path / "people" / "multicoil_val"
    before = sorted(p.stat().st_mtime_ns for p in val.glob("*.h5"))
    make_datamodule(base).setup("fit")  # the same people: used as is
    assert sorted(p.stat().st_mtime_ns for p in val.glob("*.h5")) == before
    other = "data.people={train: [colin27], pool: [colin27], val: [itk], test: [mni152]}"
    with pytest.raises(ValueError, match=r"val split holds \['itk'\]"):
        make_datamodule([*base, other]).setup("fit")
    # A folder of another definition: validation files of the test head.
    shutil.rmtree(val)
    synth.synthesize(
        val, "multicoil", "test", 1, slices=4, size=64, anatomy="people", progress=False, full=True
    )
    with pytest.raises(ValueError, match=r"\{'itk \(written for itk\)': 1\}.*holds \['colin27'\]"):
        make_datamodule(base).setup("fit")


def test_a_people_folder_missing_a_head_is_refused(tmp_path):
    """A pool folder written when the pool held Colin27 alone shows the same first files as
    today's pool (its train volumes come first): it is refused, naming the definition it
    was written for; a smaller pool of today's definition passes."""
    from kspace_mim.data import synthesize as synth

    size = {"slices": 4, "size": 64, "anatomy": "people", "progress": False, "pool": True}
    old = {"train": ("colin27",), "pool": ("colin27",), "val": ("colin27",), "test": ("itk",)}
    synth.synthesize(tmp_path / "old", "multicoil", "train", 1, people=old, **size)
    synth.synthesize(tmp_path / "today", "multicoil", "train", 1, **size)
    synth.check_folder(tmp_path / "today", "pool", "people")  # one volume of today's pool
    with pytest.raises(
        ValueError, match=r"colin27 \(written for colin27\).*\['colin27', 'mni152'\]"
    ):
        synth.check_folder(tmp_path / "old", "pool", "people")


def test_undersampled_train_files_need_ssdu(data_root):
    """A folder of test-layout files: supervised training names the files without a
    target; with SSDU it trains on them, their own masks, batched by width."""
    folder = [
        f"data.train_path={data_root}/multicoil_test",
        f"data.val_path={data_root}/multicoil_val",
    ]
    common = [*folder, "data=tiny", "data.batch_size=2"]
    with pytest.raises(ValueError, match="file1002000.h5, file1002001.h5.*supervision=ssdu"):
        make_datamodule(common).setup("fit")
    dm = make_datamodule([*common, "supervision=ssdu"])
    dm.setup("fit")
    batches = model_batches(dm, dm.train_dataloader())
    assert batches and all(b.kspace.abs().sum() == 0 for b in batches)  # no full k-space
    widths = {v.shape[-1] for v in dm.datasets["train"].volumes}
    assert len(widths) == 2  # the two test files differ in width: never batched together
    assert {b.masked_kspace.shape[-1] for b in batches} == widths
    assert all(b.target.numel() == 0 for b in batches)


def test_train_volumes_takes_the_first_n_or_a_draw_per_seed(data_root):
    common = [
        f"data.train_path={data_root}/multicoil_train",
        f"data.val_path={data_root}/multicoil_val",
    ]

    def names(*extra: str) -> list[str]:
        dm = make_datamodule([*common, *extra])
        dm.setup("fit")
        return sorted({v.path.name for v in dm.datasets["train"].volumes})

    assert names("data.train_volumes=2", "data.train_draw=first") == [
        "file1000000.h5",
        "file1000001.h5",
    ]
    draws = {tuple(names("data.train_volumes=2", f"seed={seed}")) for seed in range(6)}
    assert len(draws) > 1 and all(len(d) == 2 for d in draws)  # the default: a draw per seed
    assert names("data.train_volumes=2", "seed=3") == names("data.train_volumes=2", "seed=3")
    with pytest.raises(InstantiationException, match="data.train_draw='best'"):
        make_datamodule([*common, "data.train_volumes=2", "data.train_draw=best"])
    with pytest.raises(ValueError, match="data.train_volumes=9, but the train folder has 5"):
        make_datamodule([*common, "data.train_volumes=9"]).setup("fit")


def fake_volume(name: str, acquisition: str) -> Volume:
    return Volume(Path(name), 4, (2, 8, 8), {"acquisition": acquisition})


def test_a_draw_is_stratified_by_acquisition_and_seeded():
    """n volumes cover min(n, acquisitions) acquisitions; each seed draws its own; the
    same seed, the same volumes, whatever the order the folder listed them in."""
    volumes = [fake_volume(f"f{i:02d}.h5", ("AXT1", "CORT1", "SAGT1")[i % 3]) for i in range(30)]
    for n in (1, 2, 3, 6):
        for seed in range(5):
            drawn = draw_volumes(volumes, n, seed)
            kinds = [v.metadata["acquisition"] for v in drawn]
            assert len(drawn) == n == len({v.path for v in drawn})
            assert len(set(kinds)) == min(n, 3) and max(map(kinds.count, kinds)) <= -(-n // 3)
            assert drawn == draw_volumes(volumes[::-1], n, seed)
    firsts = {tuple(v.path.name for v in draw_volumes(volumes, 3, s)) for s in range(10)}
    assert len(firsts) > 5
    assert draw_volumes(volumes, 30, 0) == sorted(volumes, key=lambda v: v.path.name)


def test_the_draw_is_part_of_a_runs_identity_only_when_it_draws():
    from kspace_mim.config import compose
    from kspace_mim.fingerprint import fingerprint

    assert "data.train_draw" not in fingerprint(compose([])).identity
    few = fingerprint(compose(["data.train_volumes=4"])).identity
    assert few["data.train_draw"] == "random"
    first = fingerprint(compose(["data.train_volumes=4", "data.train_draw=first"])).identity
    assert "data.train_draw" not in first  # what runs before the option did


def test_the_ddp_sampler_follows_the_runs_seed(data_root, monkeypatch):
    """Under DDP each seed shuffles the training slices its own way (seed_everything's
    seed, as Lightning seeds its own samplers), not always as seed 0."""
    import lightning as L

    orders = {}
    for seed in (0, 1):
        L.seed_everything(seed)
        dm = make_datamodule(
            [
                f"data.train_path={data_root}/multicoil_train",
                f"data.val_path={data_root}/multicoil_val",
                "data=tiny",
            ]
        )
        dm._world = lambda: (2, 0)
        dm.setup("fit")
        sampler = dm.train_dataloader().sampler
        assert sampler.seed == seed
        orders[seed] = list(sampler)
    assert orders[0] != orders[1]


def test_a_mask_sweep_is_validated_and_tested_on_one_yardstick(data_root):
    """Jobs that train under different masks (patch masks of two ratios) validate and
    test on the same acquisition masks (evaluation.mask), so no ratio wins by
    construction; evaluation.mask=null goes back to each job's own training mask."""
    folders = [
        f"data.train_path={data_root}/multicoil_train",
        f"data.val_path={data_root}/multicoil_val",
        f"data.test_path={data_root}/multicoil_val",
        "data=tiny",
        "data.num_workers=0",
    ]

    def masks(*overrides: str) -> dict[str, list]:
        dm = make_datamodule([*folders, *overrides])
        dm.setup("fit")
        dm.setup("test")
        out = {}
        for split in ("val", "test"):
            loader = getattr(dm, f"{split}_dataloader")()
            out[split] = [b.mask.clone() for b in model_batches(dm, loader)]
        return out

    def same(a: list, b: list) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    low, high = masks("mask=random0.4"), masks("mask=random0.75")
    acquired = masks("mask=equispaced4x")
    for split in ("val", "test"):
        assert same(low[split], high[split]) and same(low[split], acquired[split])
    own_low = masks("mask=random0.4", "evaluation.mask=null")
    own_high = masks("mask=random0.75", "evaluation.mask=null")
    assert not same(own_low["val"], own_high["val"])
    with pytest.raises(Exception, match="evaluation.mask: no mask option 'equispaced5x'"):
        make_datamodule([*folders, "evaluation.mask=equispaced5x"])


def test_the_yardstick_keeps_old_runs_their_identity():
    """evaluation.mask naming the training mask (what every run did before the option
    existed) is not part of a run's identity; a yardstick that differs from it is."""
    from kspace_mim.fingerprint import fingerprint

    plain = fingerprint(compose([])).identity
    assert "evaluation.mask" not in plain
    assert "evaluation.mask" not in fingerprint(compose(["evaluation.mask=null"])).identity
    patches = fingerprint(compose(["mask=random0.6"])).identity
    assert patches["evaluation.mask"] == "equispaced4x"
    own = fingerprint(compose(["mask=random0.6", "evaluation.mask=null"])).identity
    assert "evaluation.mask" not in own and own != patches


def test_a_run_recorded_before_a_key_was_ignored_is_still_its_own(tmp_path):
    """A fingerprint written when the best checkpoint's file name was part of a run's
    identity (and before the yardstick existed) matches the same configuration today:
    a study's finished jobs are reused, not refused or trained again."""
    import json

    from kspace_mim.fingerprint import fingerprint, read_fingerprint

    cfg = compose([])
    today = fingerprint(cfg)
    old = dict(today.identity)
    old["callbacks.model_checkpoint.filename"] = "best-{epoch:03d}"
    old["evaluation.mask"] = "equispaced4x"  # the training mask: what every old run did
    (tmp_path / "fingerprint.json").write_text(
        json.dumps({"identity": old, "budget": today.budget})
    )
    assert read_fingerprint(tmp_path) == today
    old["model.embed_dim"] = 7  # a real difference still shows
    (tmp_path / "fingerprint.json").write_text(
        json.dumps({"identity": old, "budget": today.budget})
    )
    assert read_fingerprint(tmp_path) != today


def test_the_embedded_set_is_written_on_its_grid(tmp_path, monkeypatch):
    """data.synthetic_size: the embedded set at another grid, in its own folder (the
    64 x 64 one is left alone), its files' targets of that size."""
    from kspace_mim.data import synthesize as synth

    for split, n in (("train", 1), ("val", 1), ("test", 1)):
        monkeypatch.setitem(synth.DEFAULT_VOLUMES, split, n)
    dm = make_datamodule(
        [f"paths.data_dir={tmp_path}", "data.synthetic_size=96", "data.crop_size=96"]
    )
    dm.setup("fit")
    assert not (tmp_path / "colin27").exists()
    files = sorted((tmp_path / "colin27_96" / "multicoil_train").glob("*.h5"))
    with h5py.File(files[0]) as f:
        assert f["reconstruction_rss"].shape[-2:] == (96, 96)
    with pytest.raises(InstantiationException, match="synthetic_size must be even"):
        make_datamodule(["data.synthetic_size=15"])
