"""Output quality of the rule miner on realistic sentences: errors once seen on news text."""

from __future__ import annotations

import re
import unicodedata

import pytest

from hf_ipt.miner import KeywordStats, MinedPair, MinerConfig, RuleMiner, keywords_from_tokenizers
from hf_ipt.miner.keywords import lower_words

PREMISE = "Digital cameras tend to be used at big family events such as weddings and birthdays."


def mined(text: str, **config) -> dict[str, list[MinedPair]]:
    """All pairs per sub-type (no cap in practice, no English check)."""
    miner = RuleMiner(MinerConfig(max_per_subtype=50, min_stopword_ratio=0.0, **config))
    by_task: dict[str, list[MinedPair]] = {}
    for pair in miner.mine(text):
        by_task.setdefault(pair.task, []).append(pair)
    return by_task


def test_words_keep_their_combining_marks() -> None:
    """Devanagari vowel signs and decomposed accents are inside a word, not breaks in it."""
    hindi = "भारत में विज्ञान और प्रौद्योगिकी का विकास तेज़ी से हो रहा है।"
    assert lower_words(hindi)[:5] == ["भारत", "में", "विज्ञान", "और", "प्रौद्योगिकी"]
    stats = KeywordStats()
    stats.update(hindi)
    assert {"विज्ञान", "प्रौद्योगिकी", "विकास"} <= set(stats.doc_freq)
    assert "व" not in stats.doc_freq  # no fragment cut at a vowel sign
    decomposed = unicodedata.normalize("NFD", "The café owners in Zürich raised prices.")
    assert lower_words(decomposed)[1:3] == [unicodedata.normalize("NFD", "café"), "owners"]
    domain = ["\u2581प्रौद्योगिकी", "\u2581" + unicodedata.normalize("NFD", "télécommunications")]
    assert len(keywords_from_tokenizers(domain, [])) == 2


@pytest.mark.parametrize(
    ("connective", "attribution"),
    [("By contrast,", "he said,"), ("However,", "she added,"), ("But,", "said Mr Hogan,")],
)
def test_a_connective_s_parenthetical_attribution_is_not_the_sentence(
    connective: str, attribution: str
) -> None:
    """'By contrast, he said, X' sets X against the sentence before; 'He said, X' is no sentence."""
    second = f"{connective} {attribution} camera phones are used to capture moments of everyday life."
    found = mined(f"{PREMISE} {second}", task_types=["nli", "paraphrase"])
    assert set(found) == {"nli.contradict", "paraphrase.different"}
    for pair in found["nli.contradict"] + found["paraphrase.different"]:
        assert attribution.rstrip(",").lower() not in (pair.question + pair.answer).lower()
    counterpoints = {pair.answer for pair in found["paraphrase.different"]}
    assert counterpoints == {"Camera phones are used to capture moments of everyday life."}


def test_a_clause_ending_in_continued_is_no_attribution() -> None:
    second = "However, the rally continued, with the main index closing at another record high."
    found = mined(f"{PREMISE} {second}", task_types=["paraphrase"])
    (pair,) = found["paraphrase.different"]
    assert "The rally continued, with the main index" in pair.question + pair.answer


def test_a_conclusion_s_inverted_attribution_is_not_the_effect() -> None:
    text = (
        "The new sentencing rules were added at a late stage of the bill and went unnoticed. "
        "As a result, says the committee, the government may need to legislate again next year."
    )
    (effect,) = mined(text, task_types=["commonsense"])["commonsense.effect"]
    assert "says the committee" not in effect.question + effect.answer
    assert "The government may need to legislate again" in effect.question + effect.answer


@pytest.mark.parametrize(
    ("text", "effect"),
    [
        # An attribution between the effect and "because" is not part of the effect.
        (
            "He quit the game, he says, because he realised that life outside it was more fun.",
            "He quit the game",
        ),
        (
            "Incidents like this happen, said Mr Thiemann, because banks rarely update their cash machines.",
            "Incidents like this happen",
        ),
        # Link words between commas or in quotes go with the cause word.
        (
            "Attendance grew, in part, because of the missionaries who used to visit the church.",
            "Attendance grew",
        ),
    ],
)
def test_a_cause_s_effect_ends_before_an_interjection(text: str, effect: str) -> None:
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", " ", '"', "?", "\n")  # the effect ends there
    assert not any(word in pair.question for word in ("says", "said", "in part"))


def test_said_as_the_effect_s_own_verb_stays() -> None:
    text = (
        "Nigel Marson, head of marketing at the firm, said the posters were useful because they "
        "work without any phone signal."
    )
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert "Nigel Marson, head of marketing at the firm, said the posters were useful" in pair.question


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "The singer spent the weekend in jail because he could not raise the £150,000 bond set by the court.",
            "He could not raise the £150,000 bond set by the court",
        ),
        (
            "The morning trains were cancelled because of a signal failure at 10:30 near the main station.",
            "A signal failure at 10:30 near the main station",
        ),
    ],
)
def test_a_cause_is_not_cut_inside_a_number(text: str, cause: str) -> None:
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert pair.answer == cause


def test_a_cause_cut_after_very_is_a_fragment() -> None:
    """'because it is very, | very hard ...' left the cause "It is very"."""
    text = "It might take even longer to build because it is very, very hard to teach a robot manners."
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ("dividend", TypeError, "got the string 'dividend': pass ['dividend']"),
        (["dividend", "interest rate", "e-mail"], ValueError, "['e-mail', 'interest rate']"),
    ],
)
def test_keywords_that_can_never_match_are_refused(keywords, error, message) -> None:
    """A string's letters would become the keywords ('d', 'i', ...); a keyword of two words
    never matches a sentence's words: both silently gave wrong or no keyword tasks."""
    with pytest.raises(error, match=re.escape(message)):
        RuleMiner(keywords=keywords)
    assert RuleMiner(keywords=["Dividend", "Zürich"]).keywords == {"dividend", "zürich"}


def test_a_byte_order_mark_is_not_part_of_the_title_or_a_sentence() -> None:
    """A text file read as "utf-8" (not "utf-8-sig") starts with U+FEFF."""
    text = (
        "\ufeffOil price rise hits airline profits\n\n"
        "Airlines around the world reported sharply lower profits in the third quarter.\n\n"
        "\ufeffThe industry body said jet fuel now accounts for a third of all operating costs."
    )
    found = mined(text, task_types=["summarize", "completion"])
    (title,) = found["summarize.title"]
    assert title.answer == "Oil price rise hits airline profits"
    (completion,) = found["completion"]  # the second sentence opens like prose again
    assert completion.answer.startswith("The industry body said")
    assert not any("\ufeff" in pair.question + pair.answer for pairs in found.values() for pair in pairs)


INVERTED_ATTRIBUTIONS = [
    (
        "Because of weak demand in Asia, sales of the console slumped in the fourth quarter, "
        "said the firm's chief executive officer Ken Kutaragi."
    ),
    (
        "Sales of the console slumped in the fourth quarter, according to analysts at Screen "
        "Digest, because demand in Asia was weak."
    ),
]


@pytest.mark.parametrize("text", INVERTED_ATTRIBUTIONS)
def test_an_inverted_attribution_is_not_part_of_the_effect(text: str) -> None:
    """'..., said chief executive John Smith.' and '..., according to X' are attributions like
    '..., he said.', however long the speaker's title."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert "Sales of the console slumped in the fourth quarter" in pair.question
    assert not any(word in pair.question for word in ("said", "according", "Kutaragi", "Screen Digest"))


NOUN_PHRASE_CAUSES = [
    (
        (
            "Peugeot warned that its profits may decline this year as a result of the higher "
            "steel, plastic and commodity prices."
        ),
        "The higher steel, plastic and commodity prices",
    ),
    (
        (
            "The founders picked the name because they liked the definition of a yahoo as a "
            "rude, unsophisticated, uncouth person."
        ),
        "They liked the definition of a yahoo as a rude, unsophisticated, uncouth person",
    ),
    (
        (
            "Revenues at the media group slipped 11% during 2004 because of the weakness of the "
            "dollar, the group said."
        ),
        "The weakness of the dollar",
    ),
]


@pytest.mark.parametrize(("text", "cause"), NOUN_PHRASE_CAUSES)
def test_a_cause_is_not_cut_inside_its_noun_phrase(text: str, cause: str) -> None:
    """A comma between a list's items or between adjectives does not end the cause: "The higher
    steel" and "... as a rude" were cut mid noun phrase."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert pair.answer == cause


@pytest.mark.parametrize(
    "text",
    [
        "Having won the role because she seemed suited to the part, Witherspoon then became pregnant.",
        "With the game being played at Murrayfield because of Uefa regulations, Robertson sees both sides.",
    ],
)
def test_an_opener_s_phrase_is_not_an_effect(text: str) -> None:
    """The main clause comes after the cause: "Having won the role" alone is no stated effect."""
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


@pytest.mark.parametrize(
    "text",
    [
        "Because the scheme costs far too much, Tim Yeo, his transport spokesman, said the plans stink.",
        (
            "The congestion charge will be extended to the whole of west London next year. "
            "Tim Yeo, his transport spokesman, said the plans stink. This is because the scheme "
            "costs drivers far too much money."
        ),
        "Tim Yeo, his transport spokesman, said the deal hurt Britain because it raised fares.",
    ],
)
def test_an_effect_keeps_the_claim_after_its_speaker_s_appositive(text: str) -> None:
    """'X, his spokesman, said Y': an attribution's cut at either comma left the speaker
    ("Tim Yeo" or "Tim Yeo, his transport spokesman") as the effect, and dropped the claim."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert "Tim Yeo, his transport spokesman, said the" in pair.question


@pytest.mark.parametrize(
    "text",
    [
        # A subject and its relative clause: the main verb comes after the cause.
        "Air passengers who are unable to board their flights because of overbooking can now demand greater compensation.",
        "The Beckhams - who qualify thanks to Victoria's former singing career - are in second place on the list.",
        "Video clips of the stunts that are possible thanks to the game's physics engine are incredibly popular.",
        "In countries like Germany and France, where frankly because of a tighter social market they have higher unemployment, there is anxiety.",
        # A subordinate clause whose verb is the dropped "is", or a subject whose verb follows the cause.
        "Any anomaly is flagged to network administrators who can take action if the traffic is due to a net-based attack.",
        "The report said that while gaps in the coverage were largely due to landscape issues, there was need for detailed explanations.",
        "If a judge is appointed, the judiciary, as a result of the appointment, may be seen as siding with the government.",
    ],
)
def test_an_effect_cut_before_its_main_verb_gives_no_pair(text: str) -> None:
    """"Air passengers who are unable to board their flights" (| because of overbooking) has no
    main verb: it comes after the cause ("can now demand")."""
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


@pytest.mark.parametrize(
    ("text", "effect"),
    [
        (
            "Microsoft's regular patches which it releases for security flaws are important because they stop worms.",
            "Microsoft's regular patches which it releases for security flaws are important",
        ),
        (
            "Those who aren't funded might be hungrier and more motivated because their road to success is harder.",
            "Those who aren't funded might be hungrier and more motivated",
        ),
        (
            "Cole, who also struggled with an ankle problem, was unable to rest because the club had too few strikers.",
            "Cole, who also struggled with an ankle problem, was unable to rest",
        ),
        ("Sir Edward said that was impossible because the Labour left was set against it.", "Sir Edward said that was impossible"),
        ("You are just doing your job because you are paid to, aren't you?", "You are just doing your job"),
        ("France will be a tough opponent because they have three wins, have just beaten England and are at home.", "France will be a tough opponent"),
    ],
)
def test_an_effect_with_its_main_verb_stays(text: str, effect: str) -> None:
    """A relative clause with its own subject, a closed one, "that" after a verb of saying, a
    question tag or a cause's own verbs after its comma leave the effect whole."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", " ", '"', "?", "\n")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            (
                '"If the MPC were to judge that a rate rise was justified because of the strength '
                'of the economy - and I am not predicting that - I do not believe it would hurt us."'
            ),
            None,
        ),
        ("But when reporters say to me I'm only doing this because it's my job, that's the same abdication.", None),
        ("If Joss Stone is the closest thing that they feel comfortable championing because of what she looks like, then so be it.", None),
        (
            "If they do appeal it won't be heard before this weekend because it takes time to set up a tribunal.",
            "If they do appeal it won't be heard before this weekend",
        ),
        (
            "When the ban comes into force we will be going to the European Court because no compensation is paid.",
            "When the ban comes into force we will be going to the European Court",
        ),
        ("If it rains in the morning we stay at home because the pitch floods easily.", "If it rains in the morning we stay at home"),
    ],
)
def test_an_if_or_when_clause_alone_is_not_an_effect(text: str, kept: str | None) -> None:
    """'If X | because Y, Z': the effect "If X" is a condition without its main clause. With no
    comma, a modal, "then" or a new subject ("If they appeal it won't be heard") shows one."""
    found = mined(text, task_types=["commonsense"]).get("commonsense.cause", [])
    if kept is None:
        assert not found
    else:
        (pair,) = found
        _, match, after = pair.question.partition(kept)
        assert match and after[:1] in ("", " ", '"', "?", "\n")


@pytest.mark.parametrize(
    ("text", "effect"),
    [
        (  # BBC entertainment 021
            'She retired in 1963, an "instant decision" she said, "largely because of a leg injury".',
            'She retired in 1963, an "instant decision"',
        ),
        (
            'Sales of the phone were "very disappointing" the company admitted, because of a late launch.',
            'Sales of the phone were "very disappointing"',
        ),
        (
            'Because of the late launch, 2004 was a "difficult year" said Roger Bennett, head of Elspa.',
            '2004 was a "difficult year"',
        ),
    ],
)
def test_an_attribution_after_a_quoted_phrase_without_a_comma_is_cut(text: str, effect: str) -> None:
    """'an "instant decision" she said': no comma sets the attribution off, the quote does; it
    stayed in the effect, and a comma earlier in the sentence took the quoted phrase as the
    speaker's words."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", "\n", "?", '"')
    assert not any(verb in pair.question for verb in (" said", " admitted"))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('2004 was a "stellar year" said Roger Bennett, director general of Elspa.', '2004 was a "stellar year"'),
        ('Police described it as "a long race" he added.', 'Police described it as "a long race"'),
        # A clause after the quoted phrase: no attribution.
        (
            'His lawyer called the term "outrageous" and said his client believed he was innocent.',
            'His lawyer called the term "outrageous" and said his client believed he was innocent.',
        ),
        ('Mr Mubanga said the "MI6 agent" told him the passport was found.', 'Mr Mubanga said the "MI6 agent" told him the passport was found.'),
        ('The "MI6 agent" said the deal was off.', 'The "MI6 agent" said the deal was off.'),
    ],
)
def test_an_attribution_after_a_quoted_phrase_is_cut_only_where_it_is_one(text: str, kept: str) -> None:
    from hf_ipt.miner.rules import drop_attribution

    assert drop_attribution(text) == kept


@pytest.mark.parametrize(
    "text",
    [
        (  # BBC politics 314
            "He insisted there was no plan for an invasion of the country saying: \"Sometimes people "
            'say because of what has happened in Iraq this is the next place."'
        ),
        "Many analysts now think because of the strike the firm will miss its profit target this year.",
        "The minister argued largely because of its rising cost, the scheme should be scrapped next year.",
    ],
)
def test_a_verb_of_saying_before_the_cause_word_gives_no_pair(text: str) -> None:
    """'people say | because of X, Y': "because" opens what they say; the effect "Sometimes people
    say" is a speaker, and the cause runs into the claim ("what has happened in Iraq this is the
    next place")."""
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


@pytest.mark.parametrize(
    ("text", "effect", "cause"),
    [
        (  # BBC sports 223: the effect was "In the end", the cause "The way that", cut at "("
            (
                '"But in the end because of the way that (Dietmar) Hamann and (Igor) Biscan '
                'performed, we did not need to change things until right at the end of the match."'
            ),
            "We did not need to change things until right at the end of the match",
            "The way that (Dietmar) Hamann and (Igor) Biscan performed",
        ),
        (
            "At the same time because of rising costs, the firm cut its dividend for the first time.",
            "The firm cut its dividend for the first time",
            "Rising costs",
        ),
    ],
)
def test_an_opener_alone_is_not_an_effect_its_main_clause_is(text: str, effect: str, cause: str) -> None:
    """'In the end | because of X, Y': the effect before the cause word is a sentence opener, its
    clause (Y) after the cause, as in "Because X, Y"; brackets closed in the cause do not end it."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert pair.answer == cause
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", " ", '"', "?", "\n")


@pytest.mark.parametrize(
    "text",
    [
        "Eventually because of the injuries and the weather the coach had to field a young side.",
        "At the same time because of rising costs, and despite the strike, it paid out more.",
    ],
)
def test_an_opener_alone_without_a_main_clause_after_a_comma_is_no_effect(text: str) -> None:
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])


def test_an_opener_with_its_clause_stays_an_effect() -> None:
    text = "In the end we lost the final because of two late mistakes by the defence."
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    assert "In the end we lost the final" in pair.question


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (
            "The campaign failed because of the way that (in most cases) voters were contacted by phone.",
            "The way that (in most cases) voters were contacted by phone",  # a bracket is no clause end
        ),
        ("The campaign failed because of the way that (in most cases voters were contacted by phone.", None),
        ("The campaign failed because of the fact that the party had no money left.", "The fact that the party had no money left"),
        ("The team suffered in the second half because we were not ready for that.", "We were not ready for that"),
    ],
)
def test_a_cause_cut_after_a_clause_opening_that_is_a_fragment(text: str, cause: str | None) -> None:
    """'because of the way that | (in most cases ...': the cut at an unclosed bracket left the
    cause "The way that", a relative clause with nothing in it; a pronoun "that" ends a cause."""
    found = mined(text, task_types=["commonsense"]).get("commonsense.cause", [])
    assert [pair.answer for pair in found] == ([cause] if cause else [])


@pytest.mark.parametrize(
    ("text", "effect"),
    [
        (  # BBC tech 142
            (
                '"You may be halfway around the world from someone, but in cyberspace you\'re just one '
                'click or one e-mail away," he said, "That\'s put a whole new dimension on disaster '
                "relief and recovery, where often people halfway around the world can be more effective "
                "in making something happen precisely because they're not right on top of the tragedy.\""
            ),
            (
                "That's put a whole new dimension on disaster relief and recovery, where often people "
                "halfway around the world can be more effective in making something happen"
            ),
        ),
        (
            (
                '"We played well for an hour," the coach told reporters, "but we lost the match '
                'because of two late mistakes."'
            ),
            "We lost the match",
        ),
        (
            (
                "\u201cFor instance,\u201d he said, \u201colder people are using SMS much more than "
                "they did five years ago because texting is cheap.\u201d"
            ),
            "Older people are using SMS much more than they did five years ago",
        ),
    ],
)
def test_an_effect_in_a_reopened_quotation_is_that_quotation(text: str, effect: str) -> None:
    """'"X," he said, "Y | because Z."': the effect ran from the first quotation across its
    attribution into the second ('X," he said, "Y'), the quotes paired across the wrong words."""
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", "\n", "?", '"')
    assert not any(verb in pair.question for verb in (" said", " told"))
    assert pair.question.count('"') % 2 == 0 and "\u201c" not in pair.question


def test_sentences_of_a_quotation_over_several_sentences_keep_their_quotes_paired() -> None:
    """Split into sentences, a quotation gives one sentence with only its opening mark and
    one with only its closing mark: each pair's texts get the missing one back."""
    text = (
        'The chief executive told reporters: "The market fell sharply in the first half of the '
        "year across Europe. However, we expect demand to pick up again in the months ahead, "
        'and we are hiring," he said on Monday.'
    )
    found = mined(text, task_types=["nli", "paraphrase", "completion"])
    (contrast,) = found["paraphrase.different"]
    assert contrast.answer == '"We expect demand to pick up again in the months ahead, and we are hiring," he said on Monday.'
    pairs = [pair for pairs in found.values() for pair in pairs]
    assert pairs and all(
        pair.question.count('"') % 2 == 0 and pair.answer.count('"') % 2 == 0 for pair in pairs
    )


@pytest.mark.parametrize("n", [0, -1, None, 2.5, True])
def test_keyword_top_refuses_a_count_that_is_not_a_positive_int(n) -> None:
    """top(-1) returned all keywords but the last, top(None) all of them, top(2.5) a TypeError
    about slice indices."""
    stats = KeywordStats()
    for _ in range(5):
        stats.update("dividend shareholders quarterly investors")
    with pytest.raises(ValueError, match=rf"`n` must be an int >= 1 .*got {re.escape(repr(n))}"):
        stats.top(n, long_word_chars=3)


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5])
def test_keyword_top_refuses_a_max_df_ratio_outside_0_1(ratio) -> None:
    """A ratio of 0 kept only the words in exactly `min_df` documents, with no word of warning."""
    stats = KeywordStats()
    for _ in range(5):
        stats.update("dividend shareholders quarterly investors")
    with pytest.raises(ValueError, match=r"`max_df_ratio` must be in \(0, 1\]"):
        stats.top(10, max_df_ratio=ratio, long_word_chars=3)
    assert stats.top(10, max_df_ratio=1, min_df=5, long_word_chars=3)  # every document may hold a keyword


@pytest.mark.parametrize(
    ("text", "effect"),
    [
        # BBC entertainment 253: the cut strips the closing mark right before "because".
        (
            "I'm redefining 'best' to mean 'most played at weddings and funerals' because people think it has deep meaning.",
            "I'm redefining 'best' to mean 'most played at weddings and funerals'",
        ),
        # BBC entertainment 122: the speech's introduction goes with its single quote.
        (
            "She said, 'the show was a big hit in London, because the audiences loved it'.",
            "The show was a big hit in London",
        ),
    ],
)
def test_a_cause_pair_s_single_quotes_are_paired(text: str, effect: str) -> None:
    (pair,) = mined(text, task_types=["commonsense"])["commonsense.cause"]
    _, found, after = pair.question.partition(effect)
    assert found and after[:1] in ("", " ", '"', "?", "\n")
    assert "'" not in pair.answer


def test_an_effect_of_an_interjection_and_a_back_reference_is_dropped() -> None:
    """BBC entertainment 122: "Yeah, it's hilarious" says no more than "It's hilarious"."""
    text = "\"She said, 'yeah, it's hilarious, because your masochistic baby did leave you'.\""
    assert "commonsense.cause" not in mined(text, task_types=["commonsense"])
