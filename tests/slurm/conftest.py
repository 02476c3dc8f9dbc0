"""The SLURM tests run against a real cluster: ``make test-slurm`` starts a one-node one on
this machine (``.ci/slurm-cluster``), points ``SLURM_CONF`` at it and sets
``KSPACE_MIM_SLURM_TESTS=1``. Without it (``make test``, or a login node whose own
``SLURM_CONF`` is set) they are not collected at all; inside ``make test-slurm`` none skips."""

from __future__ import annotations

import os
import subprocess

import pytest

if os.environ.get("KSPACE_MIM_SLURM_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def empty_queue():
    """Every test starts and ends with no job of its own left in the queue."""
    yield
    subprocess.run(["scancel", "--full", "--user", str(os.getuid())], check=False)
