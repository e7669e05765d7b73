"""A fast rule-based English sentence splitter for the rule miner.

`pysbd`, which the AdaptLLM reference uses, segments about 0.09 MB of text per second per
core: alone it would spend ten times the miner's whole budget. This splitter is one compiled
regex plus a dictionary check per candidate boundary, and handles what news and web text need:

- decimals and amounts (``$1.13bn``, ``3.5%``): a dot only ends a sentence before whitespace;
- titles and abbreviations that never end a sentence (``Mr.``, ``Dr.``, ``e.g.``, ``No. 5``);
- abbreviations that may end one (``U.S.``, ``Inc.``, ``etc.``): a boundary only when the next
  word is a common sentence opener (``... in the U.S. The firm ...``);
- initials (``J. K. Rowling``);
- list markers at the start of a line (``1.``, ``a)``, ``-``, ``*``, ``\u2022``) are dropped;
- quotes and brackets after the final mark (``... rose." The firm ...``);
- blank lines end paragraphs; a single newline ends a sentence too (headlines, list items)
  unless it looks like a hard wrap (a line ending in a lowercase letter or a comma followed
  by one starting in lowercase).
"""

from __future__ import annotations

import re

from .lexicon import lexicon

# Candidate boundary: terminal marks, optional closing quotes/brackets, then whitespace and
# something that can open a sentence (an optional opening quote, then a capital or a digit).
# A match starts only where a run of end marks starts (the lookbehind): tried at every mark of a
# long run that is not a boundary (50,000 dots), the run cost quadratic time (90 s a document).
_BOUNDARY = re.compile(r"(?<![.!?\u2026])[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]*[A-Z0-9])")
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # as str.splitlines would, but for the Unicode separators
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]\.?")
_OPENING_QUOTES = "\"'\u201c\u2018(["
# A list item's marker: a bullet or dash, or a number or letter with "." or ")", then a space.
_LIST_MARKER = re.compile(
    r"(?:[-*+\u2022\u2023\u2043\u25aa\u25cf\u25e6\u00b7\u2013\u2014]|\(?(?:\d{1,3}|[a-z])[.)])\s+"
)

# "a." after a line that stops mid-sentence is an abbreviation wrapped there ("see the report,
# | p. 12", "Smith | v. Jones"), not a list item: only "a)" and "(a)" mark letters then.
_WRAPPED_ABBREVIATION = re.compile(r"[a-z]\.")

# Words that are followed by a dot and never end a sentence: titles, "e.g.", months.
NEVER_FINAL = lexicon("never_final")
# Abbreviations before a number ("No. 5", "pp. 12"): the same words end sentences elsewhere.
NUMBER_ABBREVIATIONS = lexicon("number_abbreviations")
# Abbreviations that may end a sentence: split only before a common sentence opener.
MAYBE_FINAL = lexicon("maybe_final")
SENTENCE_OPENERS = lexicon("sentence_openers")


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences, in order, stripped, empty pieces dropped.

    Args:
        text (`str`): raw text; paragraphs separated by blank lines, lines by ``\\n``.

    Returns:
        `list[str]`: the sentences. A headline or list item without a final mark is its own
        "sentence"; callers that need prose check the ending themselves.
    """
    sentences: list[str] = []
    for paragraph in split_paragraphs(text):
        sentences.extend(_split_paragraph(paragraph))
    return sentences


def split_paragraphs(text: str) -> list[str]:
    """Lines of `text` with hard-wrapped lines re-joined, list markers dropped; blank lines dropped.

    A list item starts a paragraph of its own, even in lowercase after a comma.
    """
    paragraphs: list[str] = []
    previous, in_list = "", False
    for raw in LINE_BREAK.split(text):
        line = raw.strip()
        if not line:
            previous, in_list = "", False
            continue
        # No marker starts with a capital: most lines skip the regex.
        marker = None if line[0].isupper() else _LIST_MARKER.match(line)
        if marker and not in_list and _WRAPPED_ABBREVIATION.match(marker.group()) and previous and _is_wrap(previous, line):
            marker = None
        in_list = marker is not None
        if marker:
            paragraphs.append(line[marker.end() :])
        elif previous and _is_wrap(previous, line):
            paragraphs[-1] = f"{paragraphs[-1]} {line}"
        else:
            paragraphs.append(line)
        previous = line
    return paragraphs


def _is_wrap(previous: str, line: str) -> bool:
    """A hard wrap: the previous line stops mid-sentence and this one goes on in lowercase."""
    return (previous[-1].islower() or previous[-1] == ",") and line[0].islower()


def _split_paragraph(paragraph: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        if _is_boundary(paragraph, start, match.start(), match.end()):
            pieces.append(paragraph[start : match.end()].strip())
            start = match.end()
    pieces.append(paragraph[start:].strip())
    return [piece for piece in pieces if piece]


def _is_boundary(paragraph: str, start: int, mark: int, end: int) -> bool:
    """Decide whether the marks at ``paragraph[mark:end]`` end a sentence."""
    if paragraph[mark] != "." or paragraph[mark : mark + 2] == "..":
        return True  # "?", "!" and ellipses always end one
    word_start = _word_start(paragraph, start, mark)
    word = paragraph[word_start:mark].lstrip(_OPENING_QUOTES)
    lowered = word.lower()
    if lowered in NEVER_FINAL:
        return False
    if lowered in NUMBER_ABBREVIATIONS and _next_word(paragraph, end)[:1].isdigit():
        return False
    if len(word) == 1 and word.isupper():
        return False  # an initial: "J. K. Rowling"
    if word.isdigit() and word_start == start:
        return False  # a list number at the start of a line: "1. First item"
    if lowered in MAYBE_FINAL or _DOTTED_ACRONYM.fullmatch(word):
        return _next_word(paragraph, end) in SENTENCE_OPENERS
    return True


def _word_start(paragraph: str, start: int, mark: int) -> int:
    # Walk back over the word: the walks of successive boundaries never overlap, so the
    # whole paragraph costs O(n) even when it is one giant "word" (binary junk).
    index = mark
    while index > start and not paragraph[index - 1].isspace():
        index -= 1
    return index


def _next_word(paragraph: str, end: int) -> str:
    rest = paragraph[end : end + 40].lstrip().lstrip(_OPENING_QUOTES)
    return rest.split(" ", 1)[0].rstrip(",;:")
