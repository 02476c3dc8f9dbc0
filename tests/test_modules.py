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
            "kspace_mim_class": "kspace_mim.modules.simmim.SimMIMModule",
            "payload": SideEffect(marker),
        },
        path,
    )
    return path, marker


@pytest.mark.parametrize("entry", ["ckpt_path", "model.init_from", "reconstruct ckpt"])
def test_untrusted_checkpoints_never_run_their_payload(
    entry, untrusted, data_root, tmp_path, small_overrides
):
    """Resume (``ckpt_path``), fine-tuning (``model.init_from``) and ``reconstruct ckpt=``
    refuse the file and the payload never runs, whatever torch's default."""
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
            key = entry
            run(compose(small_overrides(data_root / "multicoil_val", f"{key}={path}")), tmp_path)
    assert not marker.exists()
