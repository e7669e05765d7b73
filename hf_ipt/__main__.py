"""``python -m hf_ipt <command> ...``: the ``hf-ipt`` command, where its console script is not on
``PATH`` (a venv not activated, a notebook's ``!python -m hf_ipt``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
