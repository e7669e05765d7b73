"""Card templates: markdown files shipped as package data under ``hf_ipt/templates/``.

Templates use `string.Template` placeholders (``$name``) so that the ``{...}`` of code
and BibTeX inside a card need no escaping. Rendering is pure: text in, text out.
"""

from __future__ import annotations

import glob
import json
import os
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


def public_location(value: object) -> object:
    """A corpus, dataset or model location as a card pushed to the Hub shows it: an absolute or home path
    by its last part, its last two for a glob (``/home/me/data/news.jsonl`` -> ``.../news.jsonl``,
    ``/home/me/data/*.jsonl`` -> ``.../data/*.jsonl``), so that a user's folders are not published;
    relative paths, Hub ids and URLs as they are. Anything else (`None`) unchanged."""
    if not isinstance(value, str) or "://" in value or not (os.path.isabs(value) or value.startswith("~")):
        return value
    parts = [part for part in value.replace(os.sep, "/").split("/") if part]
    kept = parts[-2:] if parts and glob.has_magic(parts[-1]) else parts[-1:]
    return ".../" + "/".join(kept) if kept else value


def public_values(values: dict) -> dict:
    """`values` with each one as `public_value` shows it (a record's settings, a config's stats)."""
    return {key: public_value(value) for key, value in values.items()}


def public_value(value: object) -> object:
    """`public_location` of `value` and of every value inside it: a mapping's, a list's, and a JSON object's
    written as a string (``engine_kwargs='{"download_dir": "/home/me/cache"}'``), which is written back as
    JSON. Paths nested there were published as they were."""
    if isinstance(value, dict):
        return public_values(value)
    if isinstance(value, (list, tuple)):
        return [public_value(item) for item in value]
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return public_location(value)
        if isinstance(parsed, dict) and (shown := public_values(parsed)) != parsed:
            return json.dumps(shown)
        return value
    return public_location(value)
