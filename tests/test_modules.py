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
