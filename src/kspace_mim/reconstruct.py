"""Reconstruct a folder of fastMRI volumes into fastMRI submission files.

    python -m kspace_mim.reconstruct ckpt=PATH input=DIR output=DIR [mask=...] [challenge=...]
    python -m kspace_mim.reconstruct model=zero_filled input=DIR output=DIR [mask=...]
    python -m kspace_mim.reconstruct model=cs input=DIR output=DIR [mask=...] [model.lamda=F]

Test / challenge files use their own mask; other files the configured one, seeded by
the file name (as validation). ``output/reconstruct.json`` records what made the files
(the network and its settings, the checkpoint, the mask). Bad volumes are named with their
reason, the good ones written, and the exit status is 1 when any failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from kspace_mim.checkpoints import load_module
from kspace_mim.config import CONFIG_DIR, check_renamed
from kspace_mim.data.mri_data import Volume
from kspace_mim.data.transforms import KspaceTransform
from kspace_mim.files import check_not_link, write_json
from kspace_mim.inference import AUTOCAST, eval_augmentation, reconstruct_folder
from kspace_mim.modules.reconstruction import ReconstructionModule


def check_output(output: Path, overwrite: bool) -> None:
    """An empty output folder, or ``overwrite`` and no links in it: files are replaced
    atomically, never written through a link (a link to an original would be truncated)."""
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {output} is not empty; pass overwrite=true to write into it"
        )
    if output.is_dir():
        for entry in output.iterdir():
            check_not_link(entry)
    output.mkdir(parents=True, exist_ok=True)


def untrained_model(net: dict) -> ReconstructionModule:
    """The system around a network that needs no training (zero-filling, compressed
    sensing); a trainable one is refused (its weights come from a checkpoint)."""
    model = ReconstructionModule(net=net)
    if model.trainable:
        raise ValueError(
            f"model={net['_target_']} is trained: give ckpt=PATH (its checkpoint) instead; "
            "model= takes zero_filled or cs"
        )
    return model


def trained_precision(ckpt: str | None) -> str:
    """The precision a checkpoint's run trained in: ``trainer.precision`` of the run's
    ``config.yaml`` (beside its ``checkpoints/`` folder), ``32-true`` when there is none
    (a model that needs no training, a checkpoint copied out of its run)."""
    import yaml

    config = Path(ckpt).parent.parent / "config.yaml" if ckpt else None
    if config is None or not config.is_file():
        return "32-true"
    trainer = (yaml.safe_load(config.read_text()) or {}).get("trainer") or {}
    precision = str(trainer.get("precision") or "32-true")
    return precision if precision in AUTOCAST else "32-true"


def run(cfg: DictConfig) -> int:
    """Reconstruct; returns the process exit status (0: every volume written)."""
    output = Path(cfg.output)
    check_output(output, cfg.overwrite)
    if cfg.get("model") is not None and cfg.ckpt:
        raise ValueError("give either ckpt=PATH or model=zero_filled|cs, not both")
    if cfg.get("model") is not None:
        model = untrained_model(OmegaConf.to_container(cfg.model, resolve=True))
    elif cfg.ckpt:
        model = load_module(cfg.ckpt)
    else:
        raise ValueError("give ckpt=PATH (a trained model), model=zero_filled or model=cs")
    challenge = cfg.challenge or model.data_config.get("challenge", "multicoil")
    mask = hydra.utils.instantiate(cfg.mask)
    augmentation = eval_augmentation(model)
    # Coils per slice: a model trained on adjacent slices sees slices x coils channels.
    coils = None if not model.trainable else model.num_coils // model.slices
    adjacent = model.slices // 2

    data = model.data_config
    grid, readout = data.get("grid", "square"), data.get("readout", "keep")

    def transform_for(volume: Volume) -> KspaceTransform:
        if model.varying_coils:
            # Any coil count: each volume's own (compressed only as in training).
            virtual = data.get("virtual_coils")
        else:
            # Built for one coil count: compress (or zero-pad, exactly) to it.
            differs = coils and challenge == "multicoil" and volume.num_coils != coils
            virtual = coils if differs else None
        return KspaceTransform(
            mask,
            cfg.crop_size,
            virtual,
            augmentation,
            True,
            adjacent_slices=adjacent,
            grid=grid,
            readout=readout,
        )

    device = (
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    precision = cfg.precision or trained_precision(cfg.ckpt)
    report = reconstruct_folder(
        model,
        cfg.input,
        output,
        challenge,
        transform_for,
        cfg.batch_size,
        device,
        cfg.figures,
        precision,
    )
    # What made these files: a CS row's lamda, a checkpoint's path, the mask.
    settings = {
        "model": model.hparams["net"],
        "ckpt": cfg.ckpt,
        "mask": OmegaConf.to_container(cfg.mask, resolve=True),
        "precision": precision,
        "volumes": [p.name for p in report.written],
    }
    write_json(output / "reconstruct.json", settings)
    print(f"wrote {len(report.written)} volume(s) to {output}")
    if report.failed:
        print(f"{len(report.failed)} volume(s) failed:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path.name}: {reason}", file=sys.stderr)
        return 1
    return 0


@hydra.main(config_path=str(CONFIG_DIR), config_name="reconstruct", version_base="1.3")
def reconstruct(cfg: DictConfig) -> None:
    try:
        status = run(cfg)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        status = 2
    sys.exit(status)


def main() -> None:
    """``python -m kspace_mim.reconstruct``: the Hydra command line."""
    check_renamed(sys.argv[1:])
    reconstruct()


if __name__ == "__main__":
    main()
