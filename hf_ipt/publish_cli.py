"""``hf-ipt push``: upload a synthesis output folder to a Hub dataset repo, one config per corpus.

    hf-ipt augment --corpus bbc-business --output_dir outputs/bbc
    HF_TOKEN=hf_... hf-ipt push --output_dir outputs/bbc --repo_id my-org/augmented
    python -c 'import datasets; print(datasets.load_dataset("my-org/augmented", "bbc-business", split="train"))'

The token comes from ``HF_TOKEN`` or ``hf auth login``; ``--token`` works too, but a token on a
command line ends up in shell history. ``HF_ENDPOINT`` points the upload at another Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cli import hub_unreachable_error


@dataclass
class PushArguments:
    """What to upload and where."""

    output_dir: str = field(
        metadata={"help": "Synthesis output: data/*.parquet + manifest.json or data.parquet + summary.json."}
    )
    repo_id: str = field(metadata={"help": "Dataset repo on the Hub, e.g. my-org/augmented (created when missing)."})
    config_name: str | None = field(default=None, metadata={"help": "Config name (default: the corpus name)."})
    private: bool | None = field(
        default=None,
        metadata={"help": "Visibility of a repo this push creates: true = private, false = public (default: the "
                  "owner's default, e.g. an organization's private-by-default setting)."},
    )
    revision: str | None = field(
        default=None,
        metadata={"help": "Branch to push to (default: main), created when missing; or refs/pr/N to add to open "
                  "pull request N."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace config --config_name even when it holds another corpus or synthesizer."},
    )
    license: str | None = field(
        default=None,
        metadata={"help": "License of the data for the card's metadata, as a Hub license id (cc-by-4.0, apache-2.0, "
                  "other): the corpus's license decides it. Unset, a license the card has is kept; another one than the "
                  "card's is refused while the repo holds other configs (one license covers a repo)."},
    )
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)."})

    def __post_init__(self) -> None:
        from huggingface_hub.utils import validate_repo_id

        from .publish import check_license

        validate_repo_id(self.repo_id)  # a ValueError naming the rule, before anything is read
        check_license(self.license)
        if not Path(self.output_dir).is_dir():
            raise ValueError(f"`output_dir` {self.output_dir!r} is not a folder (--output_dir)")
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # before reading the output or asking for a token: neither would help
            raise hub_unreachable_error(*self.needs_hub())

    def needs_hub(self) -> tuple[str, str]:
        """What needs the Hub, and the way to push without it here (`hf_ipt.cli.needs_hub`)."""
        return (f"pushing to {self.repo_id} needs the Hub",
                f"copy {self.output_dir} to a machine that reaches it and push from there")


def main(argv: list[str] | None = None) -> int:
    import logging

    from transformers import HfArgumentParser

    from .cli import needs_hub, parse_dataclasses, tidy_help, usage_errors
    from .publish import push_dataset

    parser = tidy_help(HfArgumentParser(PushArguments, prog="hf-ipt push"))
    (args,) = parse_dataclasses(parser, argv)
    # hf_ipt's progress lines only: at INFO the HTTP client logs every request (`httpx`, or `httpx2`
    # in newer huggingface_hub), whatever its name
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hf_ipt").setLevel(logging.INFO)
    with usage_errors(parser), needs_hub(*args.needs_hub()):
        url = push_dataset(args.output_dir, args.repo_id, config_name=args.config_name, token=args.token,
                           private=args.private, revision=args.revision, overwrite=args.overwrite,
                           license=args.license)
    print(f"pushed {args.output_dir} -> {url}")
    return 0


if __name__ == "__main__":
    from .cli import run_command

    raise SystemExit(run_command("push", main))
