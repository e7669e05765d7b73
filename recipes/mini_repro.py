"""A miniature reproduction of Instruction Pre-Training's claim (issue 9), vanilla vs. instruction PT.

Pre-trains two models of the same shape from scratch with the same token budget, one on raw
text and one on the same text with 1/5 of it instruction-augmented (rule miner by default), once
per seed, each through ``recipes/pretrain.py`` under ``accelerate launch``; scores every model on
comprehension items built from held-out texts and writes mean and std over seeds to
``output_dir/results.md`` and ``results.json`` (logic: `hf_ipt.repro`).

```bash
python recipes/mini_repro.py --config recipes/configs/mini_repro.yaml          # one GPU
python recipes/mini_repro.py --config recipes/configs/mini_repro.yaml --synthesizer instruction-pretrain/instruction-synthesizer --backend vllm
```
"""

CONFIG_HELP = "--config FILE.yaml: defaults from a YAML file (recipes/configs/mini_repro.yaml); flags override them."


def main(repro_args, synthesis_args):
    from hf_ipt.repro import run

    results = run(repro_args, synthesis_args)
    print(f"[mini-repro] results: {repro_args.output_dir}/results.md, results.json ({len(results['runs'])} runs)")


def make_parser():
    from trl import TrlParser

    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.cli import tidy_help
    from hf_ipt.demo import hide_output_option
    from hf_ipt.repro import MiniReproConfig

    return hide_output_option(tidy_help(TrlParser((MiniReproConfig, SynthesisConfig), epilog=CONFIG_HELP)))


if __name__ == "__main__":
    from hf_ipt.cli import usage_errors
    from hf_ipt.training.config import parse_recipe_args

    parser = make_parser()
    args = parse_recipe_args(parser)  # an unknown option or config key, a refused value: usage line, exit status 2
    with usage_errors(parser):  # a bad setting found at the start: one line, exit status 2
        main(*args)
