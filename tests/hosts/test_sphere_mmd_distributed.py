"""SphereMMD under torch.distributed as stable-pretraining's LeJEPA runs it
(hosts.stable_pretraining.lejepa_with_sphere_mmd gives it gather_distributed=True): the MMD of the
global batch on every rank, as SlicedEppsPulley all-reduces its statistics, with DDP's averaged
gradients those of one process. Needs only torch and the plugin, so it runs in every environment."""

import pytest
import torch
import torch.multiprocessing as mp
from helpers import dist_sphere_mmd

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles


def test_two_gloo_processes_see_the_global_batch():
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(dist_sphere_mmd.worker, args=(2, dist_sphere_mmd.free_port()), nprocs=2, join=True)
