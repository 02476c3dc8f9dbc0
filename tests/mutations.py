"""Mutation proof of the tests behind the README's promises (``make mutation``).

Each mutation removes or breaks one behaviour in the source, runs the tests that back it
and expects them to fail; the source is restored afterwards whatever happens. A mutation
whose tests still pass is a test that does not test: the script says which and exits 1.

    python tests/mutations.py [--only NAME ...] [--list]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kspace_mim"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to src/kspace_mim
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "an uncommented key of the configuration reference stays unexplained",
        "config_reference.py",
        'key.meaning = _implied(option, key) or meanings.get(option.qualified(key), "")',
        "key.meaning = _implied(option, key)",
        ("tests/test_package.py::test_every_key_of_every_option_is_explained",),
    ),
    Mutation(
        "a checkpoint is unpickled (resume, fine-tuning, reconstruct)",
        "checkpoints.py",
        'ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)',
        'ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)',
        (
            "tests/test_modules.py::test_untrusted_checkpoints_never_run_their_payload[ckpt_path]",
            "tests/test_modules.py::test_untrusted_checkpoints_never_run_their_payload[init_from]",
            "tests/test_modules.py::test_untrusted_checkpoints_never_run_their_payload"
            "[reconstruct ckpt]",
        ),
    ),
    Mutation(
        "a restarted job starts again from step 0",
        "train.py",
        "restart_checkpoint(run_dir, trusted) if own and trains else None",
        "None",
        ("tests/test_train.py::test_a_restarted_job_resumes_from_its_own_run_directory",),
    ),
    Mutation(
        "data and outputs under the repository, not the current folder",
        "config.py",
        '    return os.environ.get("KSPACE_MIM_ROOT", os.getcwd())',
        '    return os.environ.get("KSPACE_MIM_ROOT", str(CONFIG_DIR.parents[2]))',
        ("tests/test_package.py::test_data_and_outputs_default_to_the_current_folder",),
    ),
    Mutation(
        "a missing extra goes unnamed",
        "config.py",
        "        if needed and importlib.util.find_spec(module) is None:",
        "            if False:",
        ("tests/test_package.py::test_a_search_without_its_extra_names_the_extra",),
    ),
    Mutation(
        "the configuration reference drops the comments above a key",
        "config_reference.py",
        '        meaning = (match["note"] or " ".join(pending)).strip()',
        '        meaning = (match["note"] or "").strip()',
        ("tests/test_package.py::test_configuration_reference_lists_every_group_option_and_key",),
    ),
    Mutation(
        "the README's lead table compares with the wrong control",
        "study.py",
        '            (SCRATCH_TOTAL, "zero-filled"),\n            (f"{FEW_SSDU} alone",),',
        '            (SCRATCH, "zero-filled"),\n            (f"{FEW_SSDU} alone",),',
        ("tests/test_study.py::test_each_generated_page_is_its_row_files_rendering",),
    ),
    Mutation(
        "no checkpoint on SIGTERM",
        "callbacks.py",
        '        if isinstance(exception, INTERRUPTS) and trainer.state.fn == "fit":',
        "        if False:",
        ("tests/test_callbacks.py::test_sigterm_writes_a_checkpoint_and_resumes_at_that_step",),
    ),
    Mutation(
        "interrupt exits 1, not 143",
        "jobs.py",
        "raise SystemExit(130 if isinstance(err, KeyboardInterrupt) else 143) from err",
        "raise SystemExit(1) from err",
        ("tests/test_callbacks.py::test_sigterm_writes_a_checkpoint_and_resumes_at_that_step",),
    ),
    Mutation(
        "checkpoints written in place (not atomic)",
        "checkpoint_io.py",
        '        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")',
        "        tmp = path",
        ("tests/test_callbacks.py::test_a_kill_during_a_checkpoint_write_keeps_the_previous_one",),
    ),
    Mutation(
        "resume unpickles anything",
        "train.py",
        "trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)",
        "trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)",
        ("tests/test_modules.py::test_untrusted_checkpoints_never_run_their_payload[fit itself]",),
    ),
    Mutation(
        "fine-tuning reads a checkpoint unchecked",
        "checkpoints.py",
        "    ckpt = read_checkpoint(path, trusted=[own] if own else [])",
        '    ckpt = torch.load(path, map_location="cpu", weights_only=True)',
        (
            "tests/test_modules.py::test_a_checkpoint_naming_code_is_refused_on_every_path"
            "[init_from-a module outside the package as the class]",
        ),
    ),
    Mutation(
        "a checkpoint's class is imported by the name it records",
        "checkpoints.py",
        "    if not isinstance(name, str) or name not in FAMILIES:",
        "    if isinstance(name, str) and '.' in name and name not in FAMILIES:\n"
        "        return getattr(importlib.import_module(name.rsplit('.', 1)[0]), 'Evil')\n"
        "    if not isinstance(name, str) or name not in FAMILIES:",
        (
            "tests/test_modules.py::test_a_checkpoint_naming_code_is_refused_on_every_path"
            "[reconstruct ckpt-a module outside the package as the class]",
        ),
    ),
    Mutation(
        "pre-trained weights not loaded",
        "checkpoints.py",
        "    missing, unexpected = model.load_state_dict(state, strict=False)",
        "    missing, unexpected = [], []",
        ("tests/test_train.py::test_pretrain_then_finetune",),
    ),
    Mutation(
        "data range from the prediction",
        "metrics.py",
        "    maxval = float(target.max()) if maxval is None else maxval",
        "    maxval = float(pred.max()) if maxval is None else maxval",
        ("tests/test_metrics.py::test_volume_metrics_are_fastmris",),
    ),
    Mutation(
        "predictions scored without fastMRI's centre crop",
        "metrics.py",
        "    pred = center_crop(torch.from_numpy(pred), (width, width)).numpy()",
        "    pred = pred[..., : target.shape[-2], : target.shape[-1]]",
        ("tests/test_evaluate.py::test_oversized_predictions_are_centre_cropped_as_fastmri_does",),
    ),
    Mutation(
        "only the first bad file named",
        "data/mri_data.py",
        "        raise BadFilesError(bad)",
        "        raise BadFilesError(bad[:1])",
        ("tests/test_mri_data.py::test_every_bad_file_is_named_at_once",),
    ),
    Mutation(
        "NaN / Inf k-space passes unnamed",
        "data/transforms.py",
        "    if nonfinite.any():",
        "    if False:",
        ("tests/test_transforms.py::test_nonfinite_slice_names_file_and_slice",),
    ),
    Mutation(
        "a non-finite loss trains on",
        "modules/reconstruction.py",
        '        if not torch.isfinite(terms["loss"]):',
        "        if False:",
        ("tests/test_modules_base.py::test_nonfinite_loss_stops_naming_the_batch",),
    ),
    Mutation(
        "reconstruct writes into a non-empty folder",
        "reconstruct.py",
        "    if output.exists() and any(output.iterdir()) and not overwrite:",
        "    if False:",
        ("tests/test_reconstruct.py::test_bad_volumes_reported_good_ones_written",),
    ),
    Mutation(
        "seed= not applied",
        "train.py",
        "    L.seed_everything(cfg.seed, workers=True)",
        "    L.seed_everything(None, workers=True)",
        ("tests/test_train.py::test_same_seed_same_metrics",),
    ),
    Mutation(
        "FFT not orthonormal",
        "physics.py",
        'return torch.fft.fftshift(torch.fft.fftn(shifted, dim=dims, norm="ortho"), dim=dims)',
        "return torch.fft.fftshift(torch.fft.fftn(shifted, dim=dims), dim=dims)",
        ("tests/test_physics.py::test_fft_is_fastmris",),
    ),
    Mutation(
        "the reader's target is another slice's",
        "data/mri_data.py",
        "target = hf[self.recons_key][slice_num] if vol.has_target else None",
        "target = hf[self.recons_key][max(slice_num - 1, 0)] if vol.has_target else None",
        ("tests/test_mri_data.py::test_equals_fastmri_slicedataset",),
    ),
    Mutation(
        "VarNet's cascades in another order",
        "models/varnet.py",
        "        for cascade in self.cascades:",
        "        for cascade in list(self.cascades)[::-1]:",
        ("tests/test_unrolled.py::test_varnet_module_equals_fastmri_varnet",),
    ),
    Mutation(
        "RSS without the square root",
        "physics.py",
        "    return fastmri.rss_complex(torch.view_as_real(coil_images), dim=coil_dim)",
        "    return fastmri.rss_complex(torch.view_as_real(coil_images), dim=coil_dim) ** 2",
        ("tests/test_reconstruct.py::test_mask_none_returns_the_target_of_files_we_did_not_write",),
    ),
    Mutation(
        "unacquired samples reach the model",
        "data/transforms.py",
        "    masked = apply_mask(k, mask)\n",
        "    masked = k.clone()\n",
        ("tests/test_supervision.py::test_the_loss_never_sees_a_sample_that_was_not_acquired",),
    ),
    Mutation(
        "SSDU input keeps the held-out samples",
        "supervision.py",
        "        return mask & ~loss_mask, loss_mask",
        "        return mask.clone(), loss_mask",
        (
            "tests/test_supervision.py::test_split_is_disjoint_covers_the_acquisition_and_keeps_the_centre",
        ),
    ),
    Mutation(
        "SSDU holds out a share of every acquired sample, not of the outer ones",
        "supervision.py",
        "        count = round(self.loss_fraction * int(selectable.sum()))\n        held =",
        "        count = round(self.loss_fraction * int(selectable.sum() + self.centre**2))\n"
        "        held =",
        (
            "tests/test_supervision.py::test_published_ssdu_holds_out_its_share_of_the_samples_outside_a_small_block",
        ),
    ),
    Mutation(
        "fixed splits ignore the slice",
        "supervision.py",
        'key = zlib.crc32(f"{fname}:{int(slice_num)}:{k}:{self.seed}".encode())',
        'key = zlib.crc32(f"{fname}:{k}:{self.seed}".encode())',
        ("tests/test_supervision.py::test_fixed_splits_are_one_per_slice_whatever_the_rng",),
    ),
    Mutation(
        "multi-mask SSDU uses one split",
        "supervision.py",
        "        k = int(torch.randint(self.splits, ())) if self.splits > 1 else 0",
        "        k = 0",
        (
            "tests/test_supervision.py::test_multi_mask_ssdu_draws_among_k_disjoint_splits_per_slice",
        ),
    ),
    Mutation(
        "mim hides patches of unacquired samples too",
        "supervision.py",
        "        return selectable & self.patches(tuple(selectable.shape), generator)",
        "        return self.patches(tuple(selectable.shape), generator)",
        ("tests/test_supervision.py::test_mim_holds_out_the_acquired_samples_of_whole_patches",),
    ),
    Mutation(
        "the self-supervised input keeps the scale of the held-out samples",
        "supervision.py",
        "            kspace = kspace / gain.reshape(-1, 1, 1, 1)\n",
        "",
        (
            "tests/test_supervision.py::test_the_model_sees_only_the_input_set_normalised_as_at_test",
        ),
    ),
    Mutation(
        "the model reconstructs the whole acquisition in self-supervision",
        "modules/reconstruction.py",
        "        step = self.supervision.prepare(batch)\n"
        "        out = self.reconstruct(step.input)",
        "        step = self.supervision.prepare(batch)\n        out = self.reconstruct(batch)",
        (
            "tests/test_supervision.py::test_the_model_sees_only_the_input_set_normalised_as_at_test",
        ),
    ),
    Mutation(
        "density weighting weights the residual only",
        "supervision.py",
        "            residual, reference = residual * weights, reference * weights",
        "            residual = residual * weights",
        (
            "tests/test_supervision.py::test_density_weighting_divides_each_residual_by_the_root_of_its_selection_odds",
        ),
    ),
    Mutation(
        "label-free pre-training reads the fully sampled folder",
        "conf/row/ssdu.yaml",
        "  train_path: ${data.synthetic_root}/${data.challenge}_train_undersampled4x",
        "  train_path: ${data.synthetic_root}/${data.challenge}_train",
        ("tests/test_study.py::test_fine_tuning_reads_its_pre_training_by_interpolation",),
    ),
    Mutation(
        "fine-tuning starts from scratch",
        "conf/row/ssdu_tuned.yaml",
        "init_from: ${paths.pretrain}/",
        "init_from_: ${paths.pretrain}/",
        ("tests/test_study.py::test_fine_tuning_reads_its_pre_training_by_interpolation",),
    ),
    Mutation(
        "adjacent slices wrap around instead of repeating the edge",
        "data/mri_data.py",
        "wanted = np.clip(np.arange(slice_num - n, slice_num + n + 1), 0, num_slices - 1)",
        "wanted = np.arange(slice_num - n, slice_num + n + 1) % num_slices",
        ("tests/test_mri_data.py::test_adjacent_slices_repeat_the_edge_slice",),
    ),
    Mutation(
        "a stack compressed with its first slice's matrix",
        "data/transforms.py",
        "coil_compression_matrix(stacks[:, slices // 2], virtual_coils)",
        "coil_compression_matrix(stacks[:, 0], virtual_coils)",
        ("tests/test_transforms.py::test_a_stack_is_compressed_with_its_middle_slice_matrix",),
    ),
    Mutation(
        "benchmark masks seeded otherwise",
        "data/split.py",
        "    return tuple(map(ord, name))",
        "    return tuple(map(ord, name[::-1]))",
        ("tests/test_split.py::test_test_files_equal_fastmri_apply_mask_bit_for_bit",),
    ),
    Mutation(
        "image-domain SimMIM keeps an unused mask token (no gradient under DDP)",
        "models/encoders.py",
        "nn.Parameter(torch.zeros(1, 1, 1, embed_dim)) if mask_token else None",
        "nn.Parameter(torch.zeros(1, 1, 1, embed_dim))",
        ("tests/test_families.py::test_every_trainable_parameter_gets_a_nonzero_gradient",),
    ),
    Mutation(
        "first cascade's data-consistency weight trainable (zero gradient)",
        "models/unrolled.py",
        "    cascades[0].dc_weight.requires_grad_(False)",
        "    pass",
        ("tests/test_families.py::test_every_trainable_parameter_gets_a_nonzero_gradient",),
    ),
    Mutation(
        "padded coils divided by a zero std (NaN coil maps)",
        "models/coils.py",
        "    sens_net.norm_unet.__class__ = GuardedNormUnet",
        "    pass",
        (
            "tests/test_grid_coils.py::test_empty_coils_get_zero_maps_and_real_coils_fastmri_s",
            "tests/test_grid_coils.py::test_coils_padded_to_a_fixed_count_train_without_nan",
        ),
    ),
    Mutation(
        "native grid samples the padding columns",
        "data/transforms.py",
        "                sampled = exclude_padding(sampled, padding)",
        "                pass",
        (
            "tests/test_grid_coils.py::test_native_grid_equals_fastmri_varnet_transform",
            "tests/test_grid_coils.py::test_release_widths_are_what_the_native_grid_batches",
        ),
    ),
    Mutation(
        "native grid crops the width",
        "data/transforms.py",
        '        return (recon_size[0] if readout == "crop" else rows), cols',
        '        return (recon_size[0] if readout == "crop" else rows), recon_size[1]',
        ("tests/test_grid_coils.py::test_release_widths_are_what_the_native_grid_batches",),
    ),
    Mutation(
        "training batches mix coil counts",
        "data/datamodule.py",
        "        if len(set(by_volume)) > 1:",
        "        if False:",
        ("tests/test_grid_coils.py::test_any_coil_count_without_compression",),
    ),
    Mutation(
        "the recipe's optimiser ignored (always AdamW)",
        "optim.py",
        "        cls = optimizer_class(self.optimizer)",
        '        cls = optimizer_class("torch.optim.AdamW")',
        ("tests/test_families.py::test_the_checkpoint_holds_the_configured_recipe",),
    ),
    Mutation(
        "benchmark validation with the training mask",
        "data/datamodule.py",
        "        protocol = CartesianMask(protocol_mask_func()) if self.split_lists else None",
        "        protocol = None",
        ("tests/test_grid_coils.py::test_split_validates_with_the_protocol_masks",),
    ),
    Mutation(
        "test slabs shared with train",
        "data/anatomy/__init__.py",
        "                if PATTERN[i % len(PATTERN)] in parts",
        "                if True",
        ("tests/test_anatomy.py::test_splits_take_separate_slabs_with_a_gap",),
    ),
    Mutation(
        "no test_full twins",
        "data/synthesize.py",
        '        if split == "test":\n            synthesize(folders["test_full"]',
        '        if False:\n            synthesize(folders["test_full"]',
        ("tests/test_anatomy.py::test_test_full_twins_hold_the_test_files_fully_sampled",),
    ),
    Mutation(
        "compare pairs volumes out of order",
        "compare.py",
        "np.array([b[n][metric] for n in names], dtype=np.float64)",
        "np.array([b[n][metric] for n in reversed(names)], dtype=np.float64)",
        ("tests/test_compare.py::test_equals_scipy_wilcoxon_and_bootstrap_on_the_same_numbers",),
    ),
    Mutation(
        "bootstrap without resampling",
        "compare.py",
        "    means = differences[idx].mean(axis=1)",
        "    means = np.repeat(differences.mean(), resamples)",
        ("tests/test_compare.py::test_equals_scipy_wilcoxon_and_bootstrap_on_the_same_numbers",),
    ),
    Mutation(
        "CS ignores its L1 weight",
        "models/cs.py",
        "            self.lamda,\n",
        "            0.0,\n",
        ("tests/test_cs.py::test_lamda_moves_the_result",),
    ),
    Mutation(
        "validation every step instead of the log-spaced ones",
        "callbacks.py",
        "        self.steps = set(steps) if steps else set(log_spaced_steps(max_steps, points))",
        "        self.steps = set(range(1, max_steps + 1))",
        (
            "tests/test_callbacks.py::test_validation_at_log_spaced_steps_keeps_the_best_and_says_so",
        ),
    ),
    Mutation(
        "numbers of the last checkpoint, not the one chosen on val",
        "train.py",
        "        chosen = chosen_checkpoint(cfg, callbacks, run_dir)\n",
        "        chosen = None\n",
        (
            "tests/test_callbacks.py::test_validation_at_log_spaced_steps_keeps_the_best_and_says_so",
        ),
    ),
    Mutation(
        "results test every model at 4x only",
        "study.py",
        '    return f"{digits}x"',
        '    return "4x"',
        (
            "tests/test_study.py::"
            "test_jobs_become_records_per_acceleration_with_cs_chosen_on_validation",
        ),
    ),
    Mutation(
        "every difference marked significant",
        "tables.py",
        '        "✓" if significant(stat) else "·",',
        '        "✓",',
        ("tests/test_tables.py::test_the_table_marks_what_is_significant_and_reads_it_out",),
    ),
    Mutation(
        "the README's contrast sentences lose their interval and mark",
        "tables.py",
        'said.append(f"{at}{delta} {mark}")',
        'said.append(f"{at}")',
        ("tests/test_tables.py::test_the_readme_repeats_the_contrasts_it_is_asked_to",),
    ),
    Mutation(
        "pre-training steps not counted in the curve",
        "study.py",
        '    steps = int(_yaml(source / "config.yaml")["trainer"]["max_steps"])',
        "    steps = 0",
        (
            "tests/test_study.py::"
            "test_jobs_become_records_per_acceleration_with_cs_chosen_on_validation",
        ),
    ),
    Mutation(
        "sweep report mixes configurations across seeds",
        "report.py",
        '    params = [p for p in swept_parameters(frame) if p != "seed"]\n    done =',
        "    params = []\n    done =",
        ("tests/test_report.py::test_seeds_are_grouped_with_means_and_intervals",),
    ),
    # --- files the package did not make never act on their own ---------------------------
    Mutation(
        "a checkpoint's hyper-parameters may name any callable",
        "checkpoints.py",
        '        if key == "_target_" and value not in allowed:',
        '        if key == "_target_" and False:',
        (
            "tests/test_modules.py::test_a_checkpoint_naming_code_is_refused_on_every_path"
            "[reconstruct ckpt-builtins.open in supervision]",
        ),
    ),
    Mutation(
        "a checkpoint's optimiser name is imported",
        "checkpoints.py",
        "optimizer_class(value, imports=False) is None",
        "optimizer_class(value, imports=True) is None",
        (
            "tests/test_modules.py::test_a_checkpoint_naming_code_is_refused_on_every_path"
            "[reconstruct ckpt-a module outside the package as the optimiser]",
        ),
    ),
    Mutation(
        "a resumed checkpoint's callback paths are not checked",
        "checkpoints.py",
        '        check_callback_paths(ckpt.get("callbacks"), path)',
        "        pass",
        ("tests/test_modules.py::test_a_resumed_checkpoint_may_not_name_files_outside_its_folder",),
    ),
    Mutation(
        "the final validation loads whatever best checkpoint a resumed file names",
        "train.py",
        "inside = best and Path(best).resolve().is_relative_to(Path(run_dir).resolve())",
        "inside = bool(best)",
        ("tests/test_modules.py::test_the_best_checkpoint_is_only_ever_this_run_directorys",),
    ),
    Mutation(
        "a run directory of another configuration is resumed",
        "fingerprint.py",
        "    elif saved is not None and saved.identity != mine.identity:",
        "    elif False:",
        ("tests/test_train.py::test_a_run_directory_of_another_configuration_is_refused",),
    ),
    Mutation(
        "a checkpoint with no fingerprint is resumed",
        "fingerprint.py",
        "    elif saved is None and last.exists():",
        "    elif False:",
        ("tests/test_train.py::test_a_run_directory_of_another_configuration_is_refused",),
    ),
    Mutation(
        "an unreadable last.ckpt found by auto-resume is not named",
        "train.py",
        "        read_checkpoint(last, resume=True, trusted=trusted or [])\n"
        "    except ValueError as err:",
        "        pass\n    except ValueError as err:",
        ("tests/test_train.py::test_a_cut_off_last_ckpt_is_named_in_one_line",),
    ),
    Mutation(
        "two rows of a study share a job directory",
        "conf/experiment/results.yaml",
        "    subdir: row=${hydra.runtime.choices.row},seed=${seed}",
        "    subdir: seed=${seed}",
        ("tests/test_study.py::test_a_study_runs_as_a_sweep_reuses_its_jobs_and_makes_its_page",),
    ),
    Mutation(
        "CS is not chosen on validation",
        "study.py",
        "    best = max(settings, key=val)",
        "    best = min(settings, key=val)",
        (
            "tests/test_study.py::"
            "test_jobs_become_records_per_acceleration_with_cs_chosen_on_validation",
        ),
    ),
    Mutation(
        "label-free rows are tested at the checkpoint a label chose",
        "train.py",
        '    if which == "last":\n        last = Path(run_dir) / "checkpoints" / "last.ckpt"',
        '    if False:\n        last = Path(run_dir) / "checkpoints" / "last.ckpt"',
        ("tests/test_train.py::test_evaluation_checkpoint_chooses_the_best_or_the_last",),
    ),
    Mutation(
        "split entries may be paths",
        "data/split.py",
        "            check_file_name(name, f\"{path}: '{key}' entry\")",
        "            pass",
        (
            "tests/test_split.py::"
            "test_split_entries_that_are_paths_are_refused_and_nothing_is_written",
        ),
    ),
    Mutation(
        "outputs are written through links",
        "files.py",
        "    if path.is_symlink():",
        "    if False:",
        (
            "tests/test_reconstruct.py::test_overwrite_never_writes_through_a_link",
            "tests/test_split.py::test_the_split_never_writes_through_a_planted_link",
            "tests/test_evaluate.py::test_evaluate_names_bad_predictions_and_scores_the_rest",
            "tests/test_compare.py::test_command_line_prints_and_writes_the_statistics",
        ),
    ),
    Mutation(
        "outputs are written in place",
        "files.py",
        "        yield tmp\n        os.replace(tmp, path)",
        "        yield path",
        ("tests/test_reconstruct.py::test_outputs_are_replaced_atomically",),
    ),
    Mutation(
        "one unreadable job stops the sweep report",
        "report.py",
        "        except (OSError, ValueError, yaml.YAMLError, TypeError, AttributeError) as err:",
        "        except ZeroDivisionError as err:",
        (
            "tests/test_report.py::"
            "test_a_job_whose_files_cannot_be_read_is_named_and_the_others_tabled",
        ),
    ),
    Mutation(
        "a volume's declared sizes are not checked",
        "data/mri_data.py",
        '        check_dataset_size(path, "kspace", kspace, sides=2)\n',
        "",
        (
            "tests/test_mri_data.py::"
            "test_hostile_volumes_are_named_and_skipped_like_other_bad_files[huge slices]",
        ),
    ),
    Mutation(
        "the header's padding may lie outside the matrix",
        "data/mri_data.py",
        "        check_header(path, metadata, slice_shape[-1])\n",
        "",
        (
            "tests/test_mri_data.py::test_hostile_volumes_are_named_and_skipped_like_other_bad_files"
            "[padding outside the matrix]",
        ),
    ),
    Mutation(
        "file attributes override the header",
        "data/mri_data.py",
        "        metadata.update(check_attrs(path, hf, metadata))",
        "        metadata.update(hf.attrs)",
        (
            "tests/test_mri_data.py::test_hostile_volumes_are_named_and_skipped_like_other_bad_files"
            "[an attribute overriding the header]",
        ),
    ),
    Mutation(
        "the user's own network is not trusted by name",
        "checkpoints.py",
        'os.environ.get(TRUSTED_NETS_ENV, "")',
        '""',
        ("tests/test_families.py::test_a_new_family_is_a_network_file_and_a_yaml",),
    ),
    Mutation(
        "a checkpoint of the earlier layout is read as it is",
        "checkpoints.py",
        "    upgrade_legacy(ckpt, path, resume)\n",
        "",
        (
            "tests/test_modules.py::test_a_checkpoint_of_the_one_class_per_family_layout_loads_its_weights",
        ),
    ),
    Mutation(
        "the U-Net's L1 leaves its own normalisation",
        "modules/reconstruction.py",
        '            if w["image_l1"] and out.normalization is not None:',
        "            if False:",
        ("tests/test_unrolled.py::test_the_unet_loss_is_fastmris_on_normalised_images",),
    ),
    Mutation(
        "an old override name fails with Hydra's message only",
        "config.py",
        '                raise SystemExit(f"error: {key} is now {new}")',
        "                pass",
        ("tests/test_config.py::test_renamed_keys_name_their_successor",),
    ),
    Mutation(
        "a finished job of a study is trained again",
        "fingerprint.py",
        "    if saved is None or saved != mine or not finished or not isinstance(metrics, dict):",
        "    if True:",
        ("tests/test_jobs.py::test_a_finished_job_of_the_same_configuration_is_reused",),
    ),
    Mutation(
        "a finished job is reused under a longer budget",
        "fingerprint.py",
        "    if saved is None or saved != mine or not finished",
        "    if saved is None or saved.identity != mine.identity or not finished",
        ("tests/test_jobs.py::test_a_finished_job_of_the_same_configuration_is_reused",),
    ),
    Mutation(
        "the paired report pairs a configuration with itself",
        "report.py",
        "            stats = compare(groups[ref][1], per_volume)",
        "            stats = compare(per_volume, per_volume)",
        ("tests/test_report.py::test_a_sweep_is_paired_by_volume_against_its_reference",),
    ),
    Mutation(
        "a misspelt network argument is passed on unnamed",
        "models/presets.py",
        "    if unknown:\n",
        "    if False:\n",
        ("tests/test_config.py::test_a_misspelt_network_argument_is_named",),
    ),
    Mutation(
        "the job's held-out test ignores evaluation.test_masks",
        "train.py",
        "            datamodule.eval_mask = mask\n",
        "            pass\n",
        ("tests/test_reconstruct.py::test_the_jobs_own_test_equals_reconstruct_then_evaluate",),
    ),
    Mutation(
        "pairing per (seed, volume) pairs another seed's run",
        "tables.py",
        'zip(rec["evaluations"], ref["evaluations"], strict=True)',
        'zip(rec["evaluations"], ref["evaluations"][::-1], strict=True)',
        ("tests/test_tables.py::test_pairing_by_volume_and_by_seed_and_volume",),
    ),
    Mutation(
        "the control column is paired with the reference",
        "tables.py",
        "                    ctrl_stat = paired(ctrl, r, spec.pairing)",
        "                    ctrl_stat = paired(ref, r, spec.pairing)",
        ("tests/test_tables.py::test_a_control_column_and_a_reference_per_group",),
    ),
    Mutation(
        "the label-free copy of train is written for every run",
        "data/datamodule.py",
        "            if label_free in configured:",
        "            if True:",
        ("tests/test_datamodule.py::test_only_the_default_synthetic_folders_are_written",),
    ),
    Mutation(
        "a NaN validation metric passes silently",
        "modules/reconstruction.py",
        "        check_finite_metrics(result, stage, self.global_step)\n",
        "",
        ("tests/test_modules_base.py::test_a_nan_validation_metric_names_the_volume_and_stops",),
    ),
    Mutation(
        "Swin's heads do not follow a swept stage count",
        "models/presets.py",
        '    if family == "swin" and given.get("depths") and given.get("num_heads") is None:',
        "    if False:",
        ("tests/test_config.py::test_swin_heads_follow_the_stages_when_only_depths_are_set",),
    ),
    Mutation(
        "the default trainer stays on the CPU with a GPU present",
        "config.py",
        '        return "gpu" if cuda else "cpu"',
        '        return "cpu"',
        ("tests/test_config.py::test_the_default_trainer_takes_the_gpu_when_there_is_one",),
    ),
    Mutation(
        "the default trainer asks for bf16 on a card without it",
        "config.py",
        '        return "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"',
        '        return "bf16-mixed" if cuda else "32-true"',
        ("tests/test_config.py::test_the_default_trainer_takes_the_gpu_when_there_is_one",),
    ),
    Mutation(
        "reconstruct ignores the precision its checkpoint's run trained in",
        "reconstruct.py",
        "    precision = cfg.precision or trained_precision(cfg.ckpt)",
        '    precision = cfg.precision or "32-true"',
        ("tests/test_reconstruct.py::test_reconstruct_runs_in_the_precision_its_run_trained_in",),
    ),
    Mutation(
        "reconstruct never runs the network under autocast",
        "inference.py",
        "        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):",
        "        with torch.autocast(device.type, dtype=dtype, enabled=False):",
        ("tests/test_reconstruct.py::test_reconstruct_runs_in_the_precision_its_run_trained_in",),
    ),
    Mutation(
        "the DDP sampler shuffles as seed 0 whatever the run's seed",
        "data/datamodule.py",
        '            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))',
        "            seed = 0",
        ("tests/test_datamodule.py::test_the_ddp_sampler_follows_the_runs_seed",),
    ),
    Mutation(
        "open HDF5 files are never closed (no cap)",
        "data/mri_data.py",
        "        while self.max_open_files and len(self._files) >= self.max_open_files:",
        "        while False:",
        ("tests/test_mri_data.py::test_open_files_are_capped_least_recently_read_first",),
    ),
    Mutation(
        "the open-file cap closes the oldest opened, not the least recently read",
        "data/mri_data.py",
        "            self._files.move_to_end(path)\n",
        "            pass\n",
        ("tests/test_mri_data.py::test_open_files_are_capped_least_recently_read_first",),
    ),
    Mutation(
        "the best checkpoint's name changes with its epoch (best-epoch=003.ckpt)",
        "conf/callbacks/default.yaml",
        "  filename: best\n",
        "  filename: best-{epoch:03d}\n",
        ("tests/test_train.py::test_checkpoint_reloads_into_identical_outputs",),
    ),
    Mutation(
        "the held-out checkpoint's name changes with its epoch",
        "callbacks.py",
        '        filename="heldout",',
        '        filename="heldout-{epoch:03d}",',
        ("tests/test_heldout_validation.py::test_heldout_selection_beside_the_labelled_one",),
    ),
    Mutation(
        "no periodic checkpoint unless asked for",
        "conf/train.yaml",
        "  every_n_train_steps: 1000\n",
        "  every_n_train_steps: null\n",
        ("tests/test_config.py::test_callbacks_group_instantiates_and_entries_drop",),
    ),
    Mutation(
        "E2E-VarNet's recipe trains the trainer's 20 epochs, never reaching its decay",
        "conf/recipe/fastmri_varnet.yaml",
        "  max_epochs: 50\n",
        "  max_epochs: 20\n",
        ("tests/test_optim.py::test_every_step_schedule_reaches_its_decay_within_its_budget",),
    ),
    Mutation(
        "validation draws each job's training mask whatever evaluation.mask says",
        "train.py",
        "        eval_mask=evaluation_mask(cfg)[0],\n",
        "        eval_mask=None,\n",
        ("tests/test_datamodule.py::test_a_mask_sweep_is_validated_and_tested_on_one_yardstick",),
    ),
    Mutation(
        "the report leaves out which mask the numbers are on",
        "report.py",
        '        row["eval_mask"] = str(metrics.get("evaluation_mask") or "")',
        "        pass",
        ("tests/test_report.py::test_the_report_says_which_mask_each_number_is_on",),
    ),
    Mutation(
        "a yardstick equal to the training mask changes old runs' identity",
        "fingerprint.py",
        '        flat.pop("evaluation.mask", None)  # what every run did before the key existed',
        "        pass",
        ("tests/test_datamodule.py::test_the_yardstick_keeps_old_runs_their_identity",),
    ),
    Mutation(
        "a pre-training that does not fit names keys, not the override that fits it",
        "checkpoints.py",
        '    fix = " ".join(f"model.{k}={value(theirs[k])}" for k in keys)',
        '    fix = ""',
        ("tests/test_train.py::test_pretrain_then_finetune",),
    ),
    Mutation(
        "the knee GPU command trains the CPU preset",
        "conf/experiment/knee_multicoil.yaml",
        "  size: base             # the GPU preset",
        "  size: small            # the GPU preset",
        ("tests/test_config.py::test_the_knee_command_on_four_gpus_composes_what_its_page_says",),
    ),
    Mutation(
        "the memory estimate counts the weights again among the saved activations",
        "bench/memory.py",
        '        if key not in skip and t.device.type != "meta":',
        '        if t.device.type != "meta":',
        (
            "tests/test_memory.py::test_saved_activations_are_counted_once_per_storage_without_the_weights",
        ),
    ),
    Mutation(
        "the memory estimate leaves out AdamW's state",
        "bench/memory.py",
        '        "optimizer_gib": 2 * trainable / 2**30,  # AdamW: two moments per weight',
        '        "optimizer_gib": 0.0,',
        ("tests/test_memory.py::test_the_estimate_is_its_parts_and_scales_with_the_batch",),
    ),
    Mutation(
        "the memory estimate ignores the precision asked for",
        "bench/memory.py",
        "    autocast = dtype is not None\n",
        "    autocast = False\n",
        ("tests/test_memory.py::test_checkpointing_and_bf16_lower_the_estimate",),
    ),
    Mutation(
        "the knee how-to keeps a stale memory table",
        "bench/tables.py",
        '    knee = [r for p, r in named if "memory" in r and "knee" in Path(p).name]',
        "    knee = []",
        ("tests/test_memory.py::test_bench_tables_put_the_knee_memory_table_into_the_how_to",),
    ),
    Mutation(
        "the periodic checkpoint writes last-v1.ckpt beside the best callback's last.ckpt",
        "callbacks.py",
        "        enable_version_counter=False,\n    )\n\n\ndef progress_bar(",
        "        enable_version_counter=True,\n    )\n\n\ndef progress_bar(",
        ("tests/test_heldout_validation.py::test_heldout_selection_beside_the_labelled_one",),
    ),
    Mutation(
        "a grid traced smaller on the CPU is not scaled back to its pixels",
        "bench/memory.py",
        "    saved = saved_for_backward(forward, skip) * (h * w) / (traced[0] * traced[1])",
        "    saved = saved_for_backward(forward, skip)",
        ("tests/test_memory.py::test_a_grid_too_large_for_the_cpu_is_traced_smaller_and_scaled",),
    ),
    Mutation(
        "a recorded fingerprint is read without today's rules (old runs disowned)",
        "fingerprint.py",
        '    return Fingerprint(_identity(saved["identity"]), saved["budget"])',
        '    return Fingerprint(saved["identity"], saved["budget"])',
        (
            "tests/test_datamodule.py::test_a_run_recorded_before_a_key_was_ignored_is_still_its_own",
        ),
    ),
    Mutation(
        "a labels page's flatness reads each row at its first N only",
        "tables.py",
        '        once = (label, group) if spec.group_by == "labels" else label\n',
        "        once = label\n",
        ("tests/test_tables.py::test_flatness_reads_every_n_on_a_labels_page",),
    ),
    Mutation(
        "a page's flatness sentence follows the order its records came in",
        "tables.py",
        "    for (label, group), r in sorted(records.items(), key=lambda kv: place(kv[0])):",
        "    for (label, group), r in records.items():",
        ("tests/test_tables.py::test_a_page_reads_the_same_whatever_order_its_records_come_in",),
    ),
    Mutation(
        "a row's minutes are the mean over seeds",
        "tables.py",
        "return statistics.median(seconds) / 60 if seconds and all(seconds) else None",
        "return statistics.fmean(seconds) / 60 if seconds and all(seconds) else None",
        (
            "tests/test_tables.py::test_a_rows_minutes_are_the_median_over_seeds_also_from_older_row_files",
        ),
    ),
    Mutation(
        "older row files keep their mean minutes",
        "tables.py",
        '                rec["train_minutes"] = train_minutes(last)\n',
        "                pass\n",
        (
            "tests/test_tables.py::test_a_rows_minutes_are_the_median_over_seeds_also_from_older_row_files",
        ),
    ),
    Mutation(
        "a doubling that gains little is not named flat",
        "tables.py",
        "if flat is None and b - a < FLAT:",
        "if False:",
        (
            "tests/test_tables.py::test_doubling_the_budget_reads_what_each_doubling_gained_on_validation",
        ),
    ),
    Mutation(
        "the long page keeps every N of the study's jobs",
        "study.py",
        "        if spec.only_groups:  # a page of some groups of a study's jobs (N = all)\n",
        "        if False:\n",
        (
            "tests/test_study.py::test_the_long_page_keeps_n_all_and_reads_the_folders_its_experiments_write",
        ),
    ),
    Mutation(
        "the README calls rows by their full labels",
        "tables.py",
        "return self.readme_names.get(label, label)",
        "return label",
        ("tests/test_tables.py::test_the_readme_repeats_the_contrasts_it_is_asked_to",),
    ),
    Mutation(
        "the README leaves out the contrasts it is asked to repeat",
        "tables.py",
        "short=True)\n        if readings:\n",
        "short=True)\n        if False:\n",
        ("tests/test_tables.py::test_the_readme_repeats_the_contrasts_it_is_asked_to",),
    ),
    Mutation(
        "SimMIM's zero-initialised output layer keeps its random start",
        "models/simmim.py",
        "            nn.init.zeros_(self.decoder.output_layer.weight)\n",
        "",
        ("tests/test_simmim_physics.py::test_zero_init_returns_the_input",),
    ),
    Mutation(
        "the coil-combined image forgets the conjugate of the coil maps",
        "models/coils.py",
        "fastmri.complex_mul(images, fastmri.complex_conj(torch.view_as_real(maps)))",
        "fastmri.complex_mul(images, torch.view_as_real(maps))",
        ("tests/test_simmim_physics.py::test_reduce_and_expand_are_fastmris_and_adjoint",),
    ),
    Mutation(
        "SimMIM's default falls back to every coil as channels on the image",
        "models/simmim.py",
        '            coils = "maps" if domain == "image" else "channels"',
        '            coils = "channels"',
        ("tests/test_simmim_physics.py::test_bad_coil_and_consistency_options_are_refused",),
    ),
    Mutation(
        "SimMIM through coil maps is said to need one coil count",
        "models/simmim.py",
        '        return self.coils == "maps"',
        "        return False",
        (
            "tests/test_simmim_physics.py::test_maps_take_any_coil_count_and_train_the_sensitivity_network",
        ),
    ),
    Mutation(
        "SimMIM's soft data consistency ignores its learned weight",
        "models/simmim.py",
        "            kspace = prediction - self.dc_weight * step",
        "            kspace = prediction - step",
        ("tests/test_simmim_physics.py::test_soft_dc_starts_hard_and_learns_its_weight",),
    ),
    Mutation(
        "the unrolled network's first estimate ignores the coil maps it is given",
        "models/unrolled.py",
        '        if self.first_coils == "maps":',
        "        if False:",
        ("tests/test_simmim_physics.py::test_the_unrolled_first_estimate_starts_at_its_input",),
    ),
    Mutation(
        "a study's FLOPs are counted on the file's grid, not the model's",
        "study.py",
        '    datamodule = build_datamodule(OmegaConf.create(job["config"]))',
        '    datamodule = build_datamodule(OmegaConf.create({**job["config"], "data": '
        '{**job["config"]["data"], "grid": "native"}}))',
        ("tests/test_study.py::test_flops_are_of_the_jobs_own_network_and_grid",),
    ),
    Mutation(
        "a fine-tuned row's FLOPs leave out its pre-training",
        "study.py",
        "        total = None if before is None else total + before\n",
        "        total = total\n",
        (
            "tests/test_study.py::test_training_flops_count_each_folder_on_its_grid_and_the_pre_training",
        ),
    ),
    Mutation(
        "a joint run's FLOPs leave out its pool batch",
        "study.py",
        '    per_slice = [_flops_per_step(job, part) for part in ("train", "pool")]',
        '    per_slice = [_flops_per_step(job, part) for part in ("train",)]',
        (
            "tests/test_study.py::test_training_flops_count_each_folder_on_its_grid_and_the_pre_training",
        ),
    ),
    Mutation(
        "a study's FLOPs count every folder on the largest grid of the job",
        "study.py",
        "    keys = [datamodule.slice_key(v) for v in datamodule.datasets[part].volumes]",
        "    keys = [datamodule.slice_key(v) for d in datamodule.datasets.values() "
        "for v in d.volumes]",
        (
            "tests/test_study.py::test_training_flops_count_each_folder_on_its_grid_and_the_pre_training",
        ),
    ),
    Mutation(
        "a study's FLOPs count the family's default network, not the job's",
        "study.py",
        "        model_overrides(model),\n",
        "        (),\n",
        ("tests/test_study.py::test_flops_are_of_the_jobs_own_network_and_grid",),
    ),
    Mutation(
        "an affine augmentation keeps the file's target (k-space and target disagree)",
        "data/augment.py",
        "        return self.flip_prob > 0 or self.random_crop or self.affine",
        "        return self.flip_prob > 0 or self.random_crop",
        ("tests/test_augment.py::test_augmented_kspace_and_target_come_from_the_same_images",),
    ),
    Mutation(
        "the augmentation's strength ignores how far training is",
        "data/augment.py",
        "        return self.affine_prob * (1 - math.exp(-c * self.progress)) / (1 - math.exp(-c))",
        "        return self.affine_prob",
        ("tests/test_augment.py::test_the_exponential_schedule_grows_from_nothing_to_affine_prob",),
    ),
    Mutation(
        "loader workers never see the training progress",
        "data/augment.py",
        "torch.ones((), dtype=torch.float64).share_memory_()",
        "torch.ones((), dtype=torch.float64)",
        ("tests/test_augment.py::test_progress_reaches_persistent_loader_workers",),
    ),
    Mutation(
        "an option added later changes every finished run's identity",
        "fingerprint.py",
        "        and not (k in NEUTRAL and v == NEUTRAL[k])\n",
        "",
        ("tests/test_augment.py::test_an_option_added_later_keeps_old_runs_their_identity",),
    ),
    Mutation(
        "a gated cascade starts open (VarNet's untrained output is not zero-filling)",
        "models/residual.py",
        "        self.scale = nn.Parameter(torch.zeros(()))",
        "        self.scale = nn.Parameter(torch.ones(()))",
        ("tests/test_start_at_input.py::test_the_untrained_network_returns_the_zero_filled_image",),
    ),
    Mutation(
        "the residual U-Net adds its correction to the image mean",
        "models/unet.py",
        "(middle if self.residual else mean)",
        "mean",
        ("tests/test_start_at_input.py::test_the_untrained_network_returns_the_zero_filled_image",),
    ),
    Mutation(
        "maps_start=zero_filled still starts at the coil-map projection",
        "models/simmim.py",
        '        if start == "sense":\n',
        "        if True:\n",
        ("tests/test_start_at_input.py::test_the_untrained_network_returns_the_zero_filled_image",),
    ),
    Mutation(
        "step 0's validation is logged but its weights never kept",
        "callbacks.py",
        "            callback._last_global_step_saved = -1\n",
        "            pass\n",
        ("tests/test_callbacks.py::test_validation_at_step_zero_competes_for_the_best_checkpoint",),
    ),
    Mutation(
        "validation.at_zero validates nothing before the first step",
        "callbacks.py",
        "        if trainer.global_step != 0 or not trainer.limit_val_batches:",
        "        if True:",
        ("tests/test_callbacks.py::test_validation_at_step_zero_competes_for_the_best_checkpoint",),
    ),
    Mutation(
        "a labelled draw is the same for every seed",
        "data/datamodule.py",
        "    rng = random.Random(seed)",
        "    rng = random.Random(0)",
        ("tests/test_datamodule.py::test_a_draw_is_stratified_by_acquisition_and_seeded",),
    ),
    Mutation(
        "a labelled draw is not stratified by acquisition",
        "data/datamodule.py",
        "            if groups[name] and len(chosen) < n:",
        "            while groups[name] and len(chosen) < n:",
        ("tests/test_datamodule.py::test_a_draw_is_stratified_by_acquisition_and_seeded",),
    ),
    Mutation(
        "label-free validation reads the fully sampled k-space",
        "modules/reconstruction.py",
        "        acquired = batch._replace(kspace=batch.masked_kspace, target=torch.zeros(0, 0))",
        "        acquired = batch._replace(masked_kspace=batch.kspace)",
        ("tests/test_heldout_validation.py::test_the_heldout_loss_reads_only_acquired_samples",),
    ),
    Mutation(
        "evaluation.checkpoint=heldout keeps the checkpoint chosen on labels",
        "train.py",
        'HELDOUT_METRIC if which == "heldout" else None',
        "None",
        ("tests/test_heldout_validation.py::test_heldout_selection_beside_the_labelled_one",),
    ),
    Mutation(
        "the people set trains on the test person",
        "data/anatomy/__init__.py",
        '    "train": ("colin27",),\n    "pool": ("colin27", "mni152"),\n',
        '    "train": ("colin27", "itk"),\n    "pool": ("colin27", "mni152"),\n',
        (
            "tests/test_anatomy.py::"
            "test_the_people_set_never_shows_the_test_person_outside_the_test",
        ),
    ),
    Mutation(
        "the label-free pool holds the test person",
        "data/anatomy/__init__.py",
        '    "pool": ("colin27", "mni152"),\n',
        '    "pool": ("colin27", "itk"),\n',
        (
            "tests/test_anatomy.py::"
            "test_the_people_set_never_shows_the_test_person_outside_the_test",
            "tests/test_datamodule.py::test_data_people_writes_the_set_split_by_person",
        ),
    ),
    Mutation(
        "the label-free pool is the labelled volumes only",
        "data/synthesize.py",
        '        pool = split == LABEL_FREE_TRAIN and anatomy == "people"\n',
        "        pool = False\n",
        ("tests/test_datamodule.py::test_data_people_writes_the_set_split_by_person",),
    ),
    Mutation(
        "data.people may put the test person in training",
        "data/anatomy/__init__.py",
        '    shared = set(out["test"]) & (',
        "    shared = set() & (",
        (
            "tests/test_anatomy.py::"
            "test_the_people_set_never_shows_the_test_person_outside_the_test",
        ),
    ),
    Mutation(
        "a people folder of another definition is read as is",
        "data/synthesize.py",
        '        if who not in heads or written != ",".join(heads)\n',
        "        if who not in heads and False\n",
        ("tests/test_datamodule.py::test_a_people_folder_of_another_definition_is_refused",),
    ),
    Mutation(
        "a people folder written when its split held fewer heads is read as is",
        "data/synthesize.py",
        '        if who not in heads or written != ",".join(heads)\n',
        "        if who not in heads\n",
        ("tests/test_datamodule.py::test_a_people_folder_missing_a_head_is_refused",),
    ),
    Mutation(
        "the MNI152 template is not rounded as the shipped heads are",
        "data/anatomy/__init__.py",
        "    return (np.round(volume / volume.max() * 254) / 254).astype(np.float32)\n",
        "    return (volume / volume.max()).astype(np.float32)\n",
        ("tests/test_anatomy.py::test_the_validation_person_is_nilearns_mni152_template",),
    ),
    Mutation(
        "the people set's files do not say whom they show",
        "data/synthesize.py",
        '            anatomy == "people",\n',
        "            False,\n",
        ("tests/test_anatomy.py::test_no_file_of_the_test_person_is_in_any_pool",),
    ),
    Mutation(
        "joint training ignores the pool's label-free loss",
        "modules/reconstruction.py",
        '        total = supervised["loss"] + joint.weight * free["loss"]',
        '        total = supervised["loss"]',
        (
            "tests/test_joint.py::"
            "test_the_joint_loss_is_the_supervised_plus_the_weighted_label_free_one",
        ),
    ),
    Mutation(
        "a joint epoch ends with the shorter loader (the pool is cut)",
        "data/datamodule.py",
        'CombinedLoader(loaders, mode="max_size_cycle")',
        'CombinedLoader(loaders, mode="min_size")',
        ("tests/test_joint.py::test_a_joint_run_takes_a_labelled_and_a_pool_batch_every_step",),
    ),
    Mutation(
        "the hierarchical bootstrap never resamples runs",
        "compare.py",
        "        ri = rng.integers(0, k, size=(stop - start, k))",
        "        ri = np.broadcast_to(np.arange(k), (stop - start, k))",
        ("tests/test_compare.py::test_the_hierarchical_bootstrap_widens_when_runs_disagree",),
    ),
    Mutation(
        "a page reads every job under the job's own selection, not the page's",
        "study.py",
        '    return (metrics.get("also") or {}).get(selection)',
        "    return metrics",
        (
            "tests/test_study.py::"
            "test_few_labels_rows_read_the_pages_selection_and_repeat_the_label_free_rows",
        ),
    ),
    Mutation(
        "the label-free rows stand at N = 0 only (nothing says what the labels add)",
        "study.py",
        "        for other in row.also_groups:",
        "        for other in ():",
        (
            "tests/test_study.py::"
            "test_few_labels_rows_read_the_pages_selection_and_repeat_the_label_free_rows",
        ),
    ),
    Mutation(
        "hierarchical pairing pairs runs by position, not by seed",
        "tables.py",
        '        theirs = dict(zip(ref["seeds"], ref["evaluations"], strict=True))',
        '        theirs = dict(zip(rec["seeds"], ref["evaluations"]))',
        ("tests/test_tables.py::test_hierarchical_pairing_pairs_each_seed_with_the_same_seed",),
    ),
    Mutation(
        "few-labels fine-tuning reads SimMIM-Swin's pre-training whatever the network",
        "conf/experiment/few_labels.yaml",
        "few_labels_pretrain/model=${hydra:runtime.choices.model}",
        "few_labels_pretrain/model=swin",
        ("tests/test_study.py::test_few_labels_fine_tunes_its_own_networks_pre_training",),
    ),
    Mutation(
        "a sweep's jobs one folder deeper are not found",
        "report.py",
        '    markers = [*sweep_dir.glob("*/.hydra"), *sweep_dir.glob("*/*/.hydra")]',
        '    markers = [*sweep_dir.glob("*/.hydra")]',
        ("tests/test_report.py::test_jobs_one_level_deeper_are_found_and_ordered",),
    ),
    Mutation(
        "the other selections are read after a checkpoint was loaded (a held-out best lost)",
        "train.py",
        "        for which, path in others.items():",
        "        for which, path in {\n"
        "            w: selected_checkpoint(w, callbacks, run_dir) for w in others\n"
        "        }.items():",
        (
            "tests/test_heldout_validation.py::"
            "test_every_selection_asked_for_is_tested_whatever_file_was_loaded_first",
        ),
    ),
    Mutation(
        "the page without labels chooses the learning rate on labelled validation",
        "study.py",
        '    return -val["heldout_loss"] if selection == "heldout" else val["ssim"]',
        '    return val["ssim"]',
        (
            "tests/test_study.py::"
            "test_few_labels_rows_read_the_pages_selection_and_repeat_the_label_free_rows",
        ),
    ),
    Mutation(
        "evaluation.also adds no other selection's numbers",
        "train.py",
        "        for which, path in others.items():",
        "        for which, path in {}.items():",
        ("tests/test_heldout_validation.py::test_heldout_selection_beside_the_labelled_one",),
    ),
    Mutation(
        "a step already tested is tested again under another selection",
        "train.py",
        "            numbers = None if step is None else done.get(step)\n",
        "            numbers = None\n",
        ("tests/test_heldout_validation.py::test_heldout_selection_beside_the_labelled_one",),
    ),
    Mutation(
        "make results-few-labels runs none of SimMIM-Swin's rates above 1e-3",
        "../../Makefile",
        "$(if $(findstring swin,$(FEW_MODELS)),",
        "$(if $(findstring none,$(FEW_MODELS)),",
        (
            "tests/test_study.py::"
            "test_make_runs_every_learning_rate_the_few_labels_pages_choose_between[swin]",
        ),
    ),
    Mutation(
        "a learning-rate candidate trains at the recipe's rate",
        "conf/row/ssdu_tuned_lr3e3.yaml",
        "  lr: 3.0e-3\n",
        "  lr: 1.0e-3\n",
        (
            "tests/test_study.py::"
            "test_make_runs_every_learning_rate_the_few_labels_pages_choose_between[swin]",
        ),
    ),
    Mutation(
        "the long check's fine-tuning leaves out the page's last budget",
        "conf/experiment/few_labels_long.yaml",
        "      budget.steps: 2,4,8\n",
        "      budget.steps: 2,4\n",
        (
            "tests/test_study.py::"
            "test_the_long_page_keeps_n_all_and_reads_the_folders_its_experiments_write",
        ),
    ),
    Mutation(
        "the long check's pre-training leaves out the page's last budget",
        "conf/experiment/few_labels_long_pretrain.yaml",
        "      budget.steps: 2,4,8\n",
        "      budget.steps: 2,4\n",
        (
            "tests/test_study.py::"
            "test_the_long_page_keeps_n_all_and_reads_the_folders_its_experiments_write",
        ),
    ),
    Mutation(
        "the curve panels clip step 0 off a logarithmic axis",
        "tables.py",
        '        ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)'
        "\n",
        '        ax.set_xscale("log")\n',
        ("tests/test_tables.py::test_the_curves_start_at_step_0_inside_their_panels",),
    ),
    Mutation(
        "budget=gpu trains the CPU's steps",
        "config.py",
        "    return max(1, round(int(steps) * float(factor)))\n",
        "    return int(steps)\n",
        ("tests/test_study.py::test_the_gpu_budget_scales_every_step_count_and_the_grid",),
    ),
    Mutation(
        "another grid shares the 64 x 64 set's folder",
        "config.py",
        '    return "" if int(size) == 64 else f"_{int(size)}"\n',
        '    return ""\n',
        ("tests/test_study.py::test_the_gpu_budget_scales_every_step_count_and_the_grid",),
    ),
    Mutation(
        "the default budget disowns every recorded job",
        "fingerprint.py",
        '    "budget.steps": 1,\n',
        '    "budget.steps": 0,\n',
        ("tests/test_study.py::test_the_gpu_budget_scales_every_step_count_and_the_grid",),
    ),
    Mutation(
        "the embedded set is written at 64 x 64 whatever its grid",
        "data/synthesize.py",
        '            **{**DEFAULT_SET, "anatomy": anatomy, "size": size},',
        '            **{**DEFAULT_SET, "anatomy": anatomy},',
        ("tests/test_datamodule.py::test_the_embedded_set_is_written_on_its_grid",),
    ),
    Mutation(
        "a README section of readings alone shows the table too",
        "tables.py",
        "    if spec.readme and not spec.readme_table:\n",
        "    if False:\n",
        ("tests/test_tables.py::test_a_readme_section_of_readings_alone",),
    ),
    Mutation(
        "settings chosen by several rows read as one row's",
        "tables.py",
        '            where = f"{label}, {_group_text(spec, g)}" if len(choosing) > 1 else g\n',
        "            where = g\n",
        (
            "tests/test_tables.py::"
            "test_settings_chosen_on_validation_name_their_row_when_several_chose",
        ),
    ),
    Mutation(
        "the last step's SSIM column shows nothing",
        "tables.py",
        '                *([_number(r.get("ssim_last"))] if last else []),',
        '                *(["-"] if last else []),',
        (
            "tests/test_tables.py::"
            "test_a_hierarchical_page_shows_each_seeds_own_test_and_the_last_step",
        ),
    ),
    Mutation(
        "every seed reads as significant alone",
        "tables.py",
        '"✓" if r["significant"] else "·" for _, r in',
        '"✓" for _, r in',
        (
            "tests/test_tables.py::"
            "test_a_hierarchical_page_shows_each_seeds_own_test_and_the_last_step",
        ),
    ),
    Mutation(
        "the study reads no last-step evaluation",
        "study.py",
        '    found = evaluations(job, spec.name, fixed, "last").get(group)',
        "    found = None",
        (
            "tests/test_study.py::"
            "test_few_labels_rows_read_the_pages_selection_and_repeat_the_label_free_rows",
        ),
    ),
    Mutation(
        "a resumed run's curve is its last part only",
        "study.py",
        'logs = sorted(Path(job).glob("csv/*/metrics.csv"), key=_version)',
        'logs = sorted(Path(job).glob("csv/*/metrics.csv"), key=_version)[-1:]',
        ("tests/test_study.py::test_a_resumed_runs_curve_and_seconds_are_the_whole_runs",),
    ),
    Mutation(
        "a resumed part's seconds restart at 0",
        "study.py",
        'seconds = frame["time/train_s"] + _seconds_at(points, start)',
        'seconds = frame["time/train_s"]',
        ("tests/test_study.py::test_a_resumed_runs_curve_and_seconds_are_the_whole_runs",),
    ),
    Mutation(
        "a resumed run forgets the seconds its checkpoint recorded",
        "callbacks.py",
        'self._before_s, self._restored = float(state_dict["train_s_total"]), True',
        "self._restored = True",
        ("tests/test_callbacks.py::test_a_resumed_run_counts_its_training_seconds_from_step_0",),
    ),
    Mutation(
        "a row chosen from one setting reads as chosen from its candidates",
        "tables.py",
        'chosen[-1] += " (the only setting run)"',
        "pass",
        ("tests/test_tables.py::test_a_setting_chosen_from_one_run_says_so",),
    ),
    Mutation(
        "more than 10 rows share colours",
        "tables.py",
        '"tab10" if len(labels) <= 10 else "tab20"',
        '"tab10"',
        ("tests/test_tables.py::test_the_plot_names_curved_rows_once_in_colours_of_their_own",),
    ),
    Mutation(
        "the test-SSIM panel names every row again",
        "tables.py",
        "handles = [(h, t) for h, t in shown if t not in curved]",
        "handles = list(shown)",
        ("tests/test_tables.py::test_the_plot_names_curved_rows_once_in_colours_of_their_own",),
    ),
    Mutation(
        "zero-filling pairs with seed 0 only",
        "tables.py",
        'if ref.get("steps") is None and len(theirs) == 1:',
        "if False:",
        ("tests/test_tables.py::test_a_reference_that_did_not_train_pairs_with_every_seed",),
    ),
    Mutation(
        "a paused interval keeps its seconds",
        "tables.py",
        "took = typical * (t1 - t0)",
        "took = took",
        ("tests/test_tables.py::test_a_paused_interval_counts_at_the_runs_median_rate",),
    ),
    Mutation(
        "a curve keeps the seconds its run stood paused",
        "study.py",
        "seconds = without_pauses(steps, [points[step][0] for step in steps])",
        "seconds = [points[step][0] for step in steps]",
        ("tests/test_study.py::test_a_curve_leaves_out_the_seconds_its_run_stood_paused",),
    ),
    Mutation(
        "a run resumed without the record logs a total anyway",
        "callbacks.py",
        "self._before_s = math.nan  # resumed from a checkpoint without the record",
        "pass",
        ("tests/test_callbacks.py::test_a_resumed_run_counts_its_training_seconds_from_step_0",),
    ),
)


def run_mutation(m: Mutation) -> tuple[bool, float]:
    """Apply ``m``, run its tests, restore. True when the tests failed (mutation killed)."""
    path = SRC / m.file
    original = path.read_text()
    if original.count(m.old) != 1:
        raise SystemExit(f"{m.name}: the text to mutate is not found once in {path}")
    start = time.perf_counter()
    try:
        path.write_text(original.replace(m.old, m.new))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    return result.returncode != 0, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.file} -> {', '.join(m.tests)}")
        return
    survived = []
    for m in chosen:
        killed, seconds = run_mutation(m)
        print(f"{'killed  ' if killed else 'SURVIVED'} {seconds:6.1f} s  {m.name}", flush=True)
        if not killed:
            survived.append(m.name)
    if survived:
        print(f"{len(survived)} mutation(s) survived: {', '.join(survived)}", file=sys.stderr)
        sys.exit(1)
    print(f"all {len(chosen)} mutations killed")


if __name__ == "__main__":
    main()
