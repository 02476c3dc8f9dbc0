"""fastMRI's own E2E-VarNet training loop, as a study's job:
``python -m kspace_mim.reference_loop -m experiment=parity row=fastmri_loop``.

The ~60-line loop of fastMRI's examples written out: its ``SliceDataset``,
``VarNetDataTransform`` (masks on the file's grid, padding columns excluded, seeded by
file name for validation), ``VarNet`` (the row's ``model.size`` preset), Adam 3e-4,
StepLR 40 epochs x 0.1 (stepped per epoch), ``SSIMLoss``, batch 1, for
``trainer.max_steps`` steps; then the validation volumes scored with fastMRI's metrics at
the final step. It reads the train config (the study's data folders, mask, steps, seed)
and writes the job directory a trained row writes (``metrics.json`` with per-volume
``volumes``, ``status.json``, the run fingerprint), so the study's table pairs it like
any row. A finished job with the same configuration is reused.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import fastmri
import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kspace_mim.config import CONFIG_DIR
from kspace_mim.files import write_json
from kspace_mim.fingerprint import claim, fingerprint, finished_run
from kspace_mim.jobs import run_job
from kspace_mim.metrics import VolumeMetrics
from kspace_mim.models.presets import resolve


def fastmri_loop(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train fastMRI's VarNet with fastMRI's loop and score it on ``data.val_path``."""
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform
    from fastmri.losses import SSIMLoss
    from fastmri.models import VarNet
    from tqdm import tqdm

    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    mask_func = hydra.utils.instantiate(cfg.mask).mask_func
    steps = int(cfg.trainer.max_steps)
    transform = VarNetDataTransform(mask_func, use_seed=False)  # a fresh mask each step
    train = SliceDataset(cfg.data.train_path, "multicoil", transform)
    loader = torch.utils.data.DataLoader(train, batch_size=1, shuffle=True)
    model = VarNet(**resolve("varnet", cfg.model.get("size") or "tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, 40, 0.1)  # stepped per epoch
    loss_fn = SSIMLoss()
    step, start = 0, time.perf_counter()
    with tqdm(total=steps, desc=f"fastMRI loop, seed {cfg.seed}", unit="step") as bar:
        while step < steps:
            for sample in loader:
                output = model(sample.masked_kspace, sample.mask, sample.num_low_frequencies)
                target, output = fastmri.data.transforms.center_crop_to_smallest(
                    sample.target, output
                )
                loss = loss_fn(output.unsqueeze(1), target.unsqueeze(1), sample.max_value)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                bar.update()
                if step == steps:
                    break
            sched.step()
    seconds = time.perf_counter() - start
    metrics = VolumeMetrics()
    model.eval()
    val = SliceDataset(
        cfg.data.val_path, "multicoil", VarNetDataTransform(mask_func, use_seed=True)
    )
    with torch.no_grad():
        for sample in val:
            output = model(
                sample.masked_kspace[None], sample.mask[None], sample.num_low_frequencies
            )
            target, output = fastmri.data.transforms.center_crop_to_smallest(
                sample.target, output[0]
            )
            metrics.update(
                sample.fname,
                sample.slice_num,
                target.numpy(),
                output.numpy(),
                float(sample.max_value),
            )
    scores = metrics.compute()
    result = {
        **{k: scores[k] for k in ("ssim", "psnr", "nmse")},
        "volumes": {
            name: {k: v[k] for k in ("ssim", "psnr", "nmse")}
            for name, v in scores["volumes"].items()
        },
        "split": "val",
        "steps": step,
        "train_seconds": seconds,
        "checkpoint_step": step,
        "selected_on": None,  # the final step: nothing chosen on validation
    }
    write_json(run_dir / "metrics.json", result)
    return result


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def reference_loop(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    mine = fingerprint(cfg)
    done = finished_run(run_dir, mine)
    if done is not None:
        print(f"finished before with this configuration: {run_dir} (reused)", file=sys.stderr)
        return float(done["ssim"])
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_job(fastmri_loop, cfg, run_dir, claim=lambda: claim(run_dir, mine, False))
    return float(metrics["ssim"])


def main() -> None:
    """``python -m kspace_mim.reference_loop``: the Hydra command line."""
    reference_loop()


if __name__ == "__main__":
    main()
