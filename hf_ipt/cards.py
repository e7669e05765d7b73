"""Card templates: markdown files shipped as package data under ``hf_ipt/templates/``.

Templates use `string.Template` placeholders (``$name``) so that the ``{...}`` of code
and BibTeX inside a card need no escaping. Rendering is pure: text in, text out.
"""

from __future__ import annotations

from importlib import resources
from string import Template


def load_template(name: str) -> str:
    """The text of ``hf_ipt/templates/<name>``, e.g. ``load_template("dataset_card.md")``."""
    path = resources.files("hf_ipt").joinpath("templates", name)
    if not path.is_file():
        raise FileNotFoundError(f"no card template {name!r} in hf_ipt/templates/")
    return path.read_text("utf-8")


def render_template(name: str, **values: object) -> str:
    """Fill the placeholders of a packaged template; a missing value raises `KeyError`."""
    return Template(load_template(name)).substitute({key: str(value) for key, value in values.items()})
