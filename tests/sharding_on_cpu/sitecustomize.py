"""Test-only: lets `accelerate launch` with the FSDP2 or DeepSpeed ZeRO-3 config shard a model on CPU.

Accelerate turns FSDP and DeepSpeed on for accelerator devices only: on CPU the shipped ``fsdp2``
config silently runs plain DDP (``MULTI_CPU``), and DeepSpeed's CPU accelerator starts with a state
of one process. Torch's FSDP2 (``fully_shard``, DTensor, distributed checkpoints, the
full-state-dict gather) and DeepSpeed's ZeRO-3 (its CPU accelerator over gloo) run on CPU, so the
tests put this folder on ``PYTHONPATH`` of a two-process launch: every process then takes the run
for what its config says, and accelerate prepares, saves and loads the model with its real FSDP2 or
DeepSpeed code. Not covered here: NCCL and mixed precision (the tests train in float32).
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

if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator: gloo, no CUDA
    from accelerate import state
    from accelerate.utils import DistributedType

    _partial_init = state.PartialState.__init__

    def _deepspeed_on_cpu(self, *args, **kwargs) -> None:
        _partial_init(self, *args, **kwargs)
        import torch.distributed as dist

        # DeepSpeed initialized the process group, but accelerate counts processes only for the backend it picked
        if self.distributed_type == DistributedType.DEEPSPEED and self.backend is None and dist.is_initialized():
            self.backend = "gloo"
            self.num_processes = dist.get_world_size()
            self.process_index = dist.get_rank()
            self.local_process_index = int(os.environ["LOCAL_RANK"])

    state.PartialState.__init__ = _deepspeed_on_cpu
