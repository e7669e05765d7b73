"""On a GPU (on a CPU as a rehearsal): `attn_implementation="hf_ipt_varlen"` (PyTorch's varlen flash kernel) against sdpa
with the packed-document mask, on the same packed bf16 batch: logits, loss, gradients, and the
isolation probe of each. Exits 1 when they disagree beyond bf16 rounding.

    python benchmarks/gpu/varlen_check.py [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the figures here too")
    parser.add_argument("--small", action="store_true", help="a 2-layer model and 128-token blocks (CPU rehearsal)")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, LlamaConfig

    from hf_ipt.training import varlen
    from hf_ipt.training.packing import isolation_gap, pack_sequences, packed_collator

    width, layers, seq = (64, 2, 128) if args.small else (512, 4, 1024)
    config = LlamaConfig(vocab_size=1000, hidden_size=width, intermediate_size=width * 11 // 4, num_hidden_layers=layers,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
                         use_cache=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    sdpa = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="sdpa").to(device)
    fast = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=varlen.prepare(varlen.NAME))
    fast = fast.to(device)
    fast.load_state_dict(sdpa.state_dict())
    rng = random.Random(0)
    documents = ([rng.randrange(1000) for _ in range(rng.randint(20, seq * 3 // 2))] for _ in range(1000))
    blocks = pack_sequences(documents, seq)
    features = [next(blocks) for _ in range(4)]
    result: dict[str, float] = {}
    outputs = {}
    for name, model in (("sdpa", sdpa), ("varlen", fast)):
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in packed_collator(model)(features).items()}
        with torch.autocast(device, dtype=torch.bfloat16):
            out = model(**batch)
        out.loss.backward()
        outputs[name] = out
        result[f"{name}_loss"] = out.loss.item()
        result[f"{name}_isolation_gap"] = isolation_gap(model, autocast_dtype=torch.bfloat16)
    scale = outputs["sdpa"].logits.float().abs().max()
    result["logits_max_diff_rel"] = float((outputs["varlen"].logits.float() - outputs["sdpa"].logits.float()).abs().max() / scale)
    grads = [(a.grad.float(), b.grad.float()) for a, b in zip(sdpa.parameters(), fast.parameters())]
    result["grad_max_diff_rel"] = max(float((b - a).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in grads)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            card = torch.cuda.get_device_name() if device == "cuda" else "CPU"
            json.dump({"device": card, "torch": torch.__version__, **result}, f, indent=1)
    ok = (result["logits_max_diff_rel"] < 2e-2 and result["grad_max_diff_rel"] < 5e-2
          and abs(result["varlen_loss"] - result["sdpa_loss"]) < 1e-2 * abs(result["sdpa_loss"])
          and result["varlen_isolation_gap"] is not None and result["varlen_isolation_gap"] < 1e-2)
    print("varlen matches sdpa" if ok else "MISMATCH between varlen and sdpa")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
