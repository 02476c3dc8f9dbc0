"""Benchmarks, measured side by side: ``python -m kspace_mim.bench data|train|tables``.

- :mod:`.data`: slices/s of our data pipeline against fastMRI's reference
  (``SliceDataset`` + ``VarNetDataTransform``) and a bare h5 read of the same slices.
- :mod:`.train`: per encoder, training-step slices/s, peak memory, parameters, FLOPs and
  on a GPU the fraction of the card's bf16 peak; our U-Net step against a bare one.
- :mod:`.tables`: ``docs/bench.md`` (and a README section, where it has one) from their JSON.
- :mod:`.timing`: the machine description and the interleaved, warmed-up timers.

The studies (training every model for a results page) are Hydra multiruns read by
``python -m kspace_mim.study`` (``make results``, ``make results-label``, ``make parity``).
"""
