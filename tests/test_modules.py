"""Loading checkpoints: tensors only, the class recorded in the file."""

from __future__ import annotations

import os

import pytest
import torch

from kspace_mim.modules import load_module


class Payload:
    """Anything that is not tensors / containers: torch.load(weights_only=True) refuses it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_untrusted_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "kspace_mim_class": "x.Y", "payload": Payload()}, path)
    with pytest.raises(ValueError, match="not a readable kspace_mim checkpoint"):
        load_module(path)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match="not a kspace_mim checkpoint"):
        load_module(tmp_path / "foreign.ckpt")


class SideEffect:
    """A pickle payload that creates ``marker`` when unpickled: proof that it ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def untrusted(tmp_path, monkeypatch):
    """A checkpoint with a side-effecting payload, and torch's default switched to full
    unpickling, so only an explicit ``weights_only=True`` keeps the payload from running."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {
            "state_dict": {},
            "global_step": 0,
            "kspace_mim_class": "kspace_mim.modules.reconstruction.ReconstructionModule",
            "payload": SideEffect(marker),
        },
        path,
    )
    return path, marker


@pytest.mark.parametrize("entry", ["ckpt_path", "init_from", "reconstruct ckpt", "fit itself"])
def test_untrusted_checkpoints_never_run_their_payload(
    entry, untrusted, data_root, tmp_path, small_overrides, monkeypatch
):
    """Resume (``ckpt_path``), fine-tuning (``init_from``) and ``reconstruct ckpt=``
    refuse the file and the payload never runs, whatever torch's default; and Lightning's
    own load of a resumed checkpoint is tensors-only too ("fit itself": the package's
    check bypassed), so one missed check is not code execution."""
    from kspace_mim.config import compose
    from kspace_mim.reconstruct import run as reconstruct
    from kspace_mim.train import run

    path, marker = untrusted
    with pytest.raises(Exception, match="[Ww]eights.only|not a readable kspace_mim"):
        if entry == "reconstruct ckpt":
            cfg = compose(
                [f"ckpt={path}", f"input={data_root}/multicoil_test", f"output={tmp_path / 'o'}"],
                config_name="reconstruct",
            )
            reconstruct(cfg)
        else:
            if entry == "fit itself":
                monkeypatch.setattr(
                    "kspace_mim.train.read_checkpoint", lambda *a, **k: {"global_step": 0}
                )
            key = "ckpt_path" if entry == "fit itself" else entry
            run(compose(small_overrides(data_root / "multicoil_val", f"{key}={path}")), tmp_path)
    assert not marker.exists()


# --- tensors-only files that still try to act: the allowlist ------------------------------
@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory, small_overrides):
    """A real 3-step run: its last.ckpt is what every gadget below is made from."""
    from kspace_mim.config import compose
    from kspace_mim.train import run

    run_dir = tmp_path_factory.mktemp("trained")
    run(compose(small_overrides(data_root / "multicoil_val")), run_dir)
    return run_dir / "checkpoints" / "last.ckpt"


GADGETS = {
    "builtins.open in supervision": lambda ck, marker, mod: ck["hyper_parameters"].update(
        supervision={"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    ),
    "os.system in optim": lambda ck, marker, mod: ck["hyper_parameters"].update(
        optim={"_target_": "os.system", "_args_": [f"touch {marker}"]}
    ),
    "a module outside the package as the class": lambda ck, marker, mod: ck.update(
        kspace_mim_class=f"{mod}.Evil"
    ),
    "a module outside the package as the optimiser": lambda ck, marker, mod: ck[
        "hyper_parameters"
    ].update(optim={"_target_": "kspace_mim.optim.WarmupCosine", "optimizer": f"{mod}.Evil"}),
    "a module outside the package as the network": lambda ck, marker, mod: ck["hyper_parameters"][
        "net"
    ].update(_target_=f"{mod}.Evil"),
    "os.system as the network": lambda ck, marker, mod: ck["hyper_parameters"].update(
        net={"_target_": "os.system", "_args_": [f"touch {marker}"]}
    ),
    "a nested target": lambda ck, marker, mod: ck["hyper_parameters"]["supervision"].update(
        extra={"_target_": "os.system", "_args_": [f"touch {marker}"]}
    ),
}
ENTRIES = ["reconstruct ckpt", "init_from", "eval_only", "ckpt_path", "own last.ckpt"]


@pytest.fixture
def gadget_module(tmp_path, monkeypatch):
    """An importable module outside the package whose import creates a marker file."""
    folder = tmp_path / "site"
    folder.mkdir()
    marker = tmp_path / "imported"
    name = f"gadget_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    (folder / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    return name, marker


@pytest.mark.parametrize("gadget", sorted(GADGETS))
@pytest.mark.parametrize("entry", ENTRIES)
def test_a_checkpoint_naming_code_is_refused_on_every_path(
    entry, gadget, trained, gadget_module, data_root, tmp_path, small_overrides
):
    """A tensors-only checkpoint whose contents name code: every path that loads one
    refuses it in one line naming the file and the entry; nothing is opened, run or
    imported."""
    import sys

    from kspace_mim.checkpoints import UntrustedCheckpointError
    from kspace_mim.config import compose
    from kspace_mim.fingerprint import claim, fingerprint
    from kspace_mim.reconstruct import run as reconstruct
    from kspace_mim.train import run

    module, imported = gadget_module
    marker = tmp_path / "opened"
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    GADGETS[gadget](ckpt, marker, module)
    run_dir = tmp_path / "run"
    path = tmp_path / "gadget.ckpt"
    train_cfg = compose(small_overrides(data_root / "multicoil_val"))
    if entry == "own last.ckpt":  # planted in a directory whose fingerprint matches
        path = run_dir / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        claim(run_dir, fingerprint(train_cfg), explicit_resume=False)
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=f"{path}.*(refused|not one of)") as err:
        if entry == "reconstruct ckpt":
            cfg = compose(
                [f"ckpt={path}", f"input={data_root}/multicoil_test", f"output={tmp_path / 'o'}"],
                config_name="reconstruct",
            )
            reconstruct(cfg)
        elif entry == "own last.ckpt":
            run(train_cfg, run_dir)
        else:
            extra = {
                "init_from": [f"init_from={path}"],
                "eval_only": [f"init_from={path}", "eval_only=true"],
                "ckpt_path": [f"ckpt_path={path}"],
            }[entry]
            run(compose(small_overrides(data_root / "multicoil_val", *extra)), run_dir)
    assert isinstance(err.value, UntrustedCheckpointError) or "refused" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists() and not imported.exists() and module not in sys.modules


def test_a_resumed_checkpoint_may_not_name_files_outside_its_folder(trained, tmp_path):
    """Lightning deletes rotated checkpoints and reloads the "best" one by the paths a
    checkpoint callback recorded: a resume refuses paths outside the callback's folder."""
    from kspace_mim.checkpoints import UntrustedCheckpointError, read_checkpoint

    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
    victim = str(tmp_path / "precious.h5")
    state["best_k_models"] = {victim: torch.tensor(1.0)}
    path = tmp_path / "gadget.ckpt"
    torch.save(ckpt, path)
    read_checkpoint(path)  # weights only: the callback's record is never used
    with pytest.raises(UntrustedCheckpointError, match="best_k_models.*outside its folder"):
        read_checkpoint(path, resume=True)
    state["best_k_models"] = {}
    state["best_model_path"] = os.path.join(state["dirpath"], "..", "..", "x.ckpt")
    torch.save(ckpt, path)
    with pytest.raises(UntrustedCheckpointError, match="best_model_path"):
        read_checkpoint(path, resume=True)


def test_the_packages_own_checkpoints_pass_the_allowlist(trained):
    from kspace_mim.checkpoints import load_module, read_checkpoint

    assert read_checkpoint(trained, resume=True)["kspace_mim_class"].endswith(
        "ReconstructionModule"
    )
    assert type(load_module(trained).net).__name__ == "SimMIMReconstructor"


def test_a_checkpoint_of_the_one_class_per_family_layout_loads_its_weights(trained, tmp_path):
    """A file written when each family was its own LightningModule (the network's
    arguments beside the system's, the family's class recorded) loads into the system
    with the same weights and outputs; resuming its training state is refused."""
    from kspace_mim.checkpoints import UntrustedCheckpointError, read_checkpoint

    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    hparams = dict(ckpt["hyper_parameters"])
    net = hparams.pop("net")
    net.pop("_target_")
    ckpt["hyper_parameters"] = {**hparams, **net}
    ckpt["kspace_mim_class"] = "kspace_mim.modules.simmim.SimMIMModule"
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    model, reference = load_module(old), load_module(trained)
    assert model.hparams["net"] == reference.hparams["net"]
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(UntrustedCheckpointError, match="earlier layout .*init_from"):
        read_checkpoint(old, resume=True)
    # a legacy file naming a network argument that is code is refused like any other
    ckpt["hyper_parameters"]["extra"] = {"_target_": "os.system", "_args_": ["true"]}
    torch.save(ckpt, old)
    with pytest.raises(UntrustedCheckpointError, match="os.system"):
        load_module(old)


def test_the_best_checkpoint_is_only_ever_this_run_directorys(tmp_path):
    """Lightning restores a resumed callback's ``best_model_path`` whatever folder it
    names: the final validation must never load another run's (or any) file by it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from kspace_mim.train import best_checkpoint

    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    for folder in (run_dir / "checkpoints", elsewhere):
        folder.mkdir(parents=True)
        (folder / "best-epoch=001.ckpt").write_bytes(b"x")
    callback = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val/ssim")
    callback.best_model_path = str(elsewhere / "best-epoch=001.ckpt")
    assert best_checkpoint([callback], run_dir) is None
    callback.best_model_path = str(run_dir / "checkpoints" / ".." / ".." / "elsewhere" / "x")
    assert best_checkpoint([callback], run_dir) is None
    callback.best_model_path = str(run_dir / "checkpoints" / "best-epoch=001.ckpt")
    assert best_checkpoint([callback], run_dir) == callback.best_model_path
