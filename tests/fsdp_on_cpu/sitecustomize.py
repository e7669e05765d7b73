"""Test-only: lets `accelerate launch` with an FSDP config shard a model on CPU, as it does on GPUs.

Accelerate turns FSDP on only for accelerator devices: with ``--use_cpu true`` and the shipped
``fsdp2`` config it silently runs plain DDP (``MULTI_CPU``). Torch's FSDP2 itself (``fully_shard``,
DTensor, distributed checkpoints, the full-state-dict gather) runs on CPU over gloo, so the tests put
this folder on ``PYTHONPATH`` of a two-process launch: every process then marks the run as FSDP, and
accelerate prepares, saves and loads the model with its real FSDP2 code. Not covered here: NCCL and
mixed precision (the tests train in float32).
"""

import os

if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
    from accelerate import state
    from accelerate.utils import DistributedType

    _init = state.AcceleratorState.__init__

    def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs) -> None:
        _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # every `AcceleratorState()` copies PartialState's type back over its own: set both
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    state.AcceleratorState.__init__ = _fsdp_on_cpu
