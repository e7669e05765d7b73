"""The mining rules: patterns that turn sentences into task candidates, no model.

Each ``*_candidates`` function scans the body's sentences and yields `Candidate`s: a
sub-type and the fields its templates fill in. Rules follow AdaptLLM (arXiv 2309.09530) in
spirit but work on sentences from `split_sentences`, which lets them keep sentences with
commas, quotes and numbers that the reference's character-class regexes drop.

This module: sentence relations (NLI, cause-effect, paraphrase), title and completion, and
the helpers the word-to-text rules (`word_rules`) share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from .config import MinerConfig
from .lexicon import lexicon


class Candidate(NamedTuple):
    """One mined task before templating: a sub-type (``"nli.entail"``) and template fields.

    Field values may still hold runs of whitespace: the miner collapses them when it renders
    the few candidates it keeps, not for every candidate found.
    """

    subtype: str
    fields: dict[str, str]


# Sentence-initial connective -> (sub-types it gives, whether a comma must follow it).
# A comma is required where the bare word has other uses ("Still waters", "So far", "Yet another").
# "Similarly", "Likewise" and "Equally" add a parallel fact, not a restatement: neutral, not
# paraphrase. "So," opens questions, examples and topic shifts as often as conclusions: it gives
# nothing, and is only known so that a cause rule strips it from an effect. Only the markers
# that restate the sentence before give paraphrases: "Namely," lists, "That is," qualifies
# ("That is, if ..."), and "Simply put," / "Put simply," sum up a passage, not that sentence.
_ENTAIL = ("nli.entail", "commonsense.effect")
_CONTRAST = ("nli.contradict", "paraphrase.different")
_NEUTRAL = ("nli.neutral",)
_SIMILAR = ("paraphrase.similar",)
_NO_RELATION: tuple[str, ...] = ()
CONNECTIVES: dict[str, tuple[tuple[str, ...], bool]] = {
    **dict.fromkeys(("Therefore", "Hence", "Consequently", "Accordingly"), (_ENTAIL, False)),
    **dict.fromkeys(
        ("Thus", "As a result", "For this reason", "For that reason", "As such"), (_ENTAIL, True)
    ),
    "So": (_NO_RELATION, True),
    **dict.fromkeys(("However", "But", "Nevertheless", "Nonetheless"), (_CONTRAST, False)),
    **dict.fromkeys(
        (
            "On the contrary",
            "In contrast",
            "By contrast",
            "Conversely",
            "Yet",
            "Still",
            "Even so",
            "That said",
            "On the other hand",
            "Whereas",
        ),
        (_CONTRAST, True),
    ),
    **dict.fromkeys(
        ("Furthermore", "Moreover", "Additionally", "Similarly", "Likewise"), (_NEUTRAL, False)
    ),
    **dict.fromkeys(
        (
            "Also",
            "In addition",
            "Secondly",
            "Besides",
            "Meanwhile",
            "What is more",
            "What's more",
            "Separately",
            "Elsewhere",
            "Equally",
        ),
        (_NEUTRAL, True),
    ),
    **dict.fromkeys(
        (
            "In other words",
            "That is to say",
            "Put another way",
            "To put it another way",
        ),
        (_SIMILAR, True),
    ),
    **dict.fromkeys(("That is", "Namely", "Put simply", "Simply put"), (_NO_RELATION, True)),
}
_ALTERNATION = "|".join(re.escape(c) for c in sorted(CONNECTIVES, key=len, reverse=True))
_LEADING = re.compile(
    rf"(?P<quote>[\"\u201c]?)(?P<conn>{_ALTERNATION})\b(?P<comma>\s*,)?\s+(?P<rest>\S.*)", re.DOTALL
)

_CAUSE_WORDS = r"because of|because|due to|owing to|thanks to|as a result of|on account of"
_CAUSE_LEAD = re.compile(
    rf"[\"\u201c]?(?P<conn>{_CAUSE_WORDS})\s+(?P<cause>[^,;]+?),\s+(?P<effect>\S.*)",
    re.DOTALL | re.IGNORECASE,
)
_CAUSE_INNER = re.compile(rf"\s(?P<conn>{_CAUSE_WORDS})\s+")
_CAUSE_BACK = re.compile(
    r"(?:This|That|It)\s+(?:is|was|has been)\s+(?:(?:partly|largely|mainly|mostly|in part|probably)\s+)?"
    rf"(?P<conn>{_CAUSE_WORDS})\s+(?P<cause>\S.*)",
    re.DOTALL,
)
# Quote marks do not end a clause ("because he lost his "spark" for acting"); "but" does. Nor
# does a comma or colon inside a number ("a £150,000 bond", "at 10:30").
_CLAUSE_END = re.compile(r"(?<!\d)[,:]|[,:](?!\d)|[;()\u2014\u2013]| - | but ")
# Words left dangling before "due to" / "because": "The fall was largely | due to ...".
_LINK_WORDS = lexicon("link_words")
# Words that never end a clause: a cause or effect ending in one was cut mid-clause.
_DANGLING_WORDS = lexicon("dangling_words")
# Pronouns, modals, "to": what is left of an effect whose "is" / "be" was dropped as a link word.
_STUB_WORDS = lexicon("stub_words")
# "and yet | because", "but again | because of": the clause they open is cut off.
_CLAUSE_ADVERBS = lexicon("clause_adverbs")
_BE = frozenset(("is", "are", "was", "were", "be", "been"))
# Adverbs of frequency between a linking "is" / "are" and the cause word: "Such absences are
# often | due to family holidays" has no verb but that "are".
_COPULA_ADVERBS = lexicon("copula_adverbs")
_REASON_WORD = re.compile(r"\breasons?\b", re.IGNORECASE)
# Words that make a following "likely" the predicate ("are likely", "more likely").
_PREDICATIVE = _BE | frozenset(("more", "most", "less", "very"))
# A quotation's attribution ending a sentence, not part of an answer: a reporting verb a few
# words after a quotation's closing mark and quote ('...," said Mr Smith, an analyst.') or after
# a comma ("..., he said."). Not a clause joined by "and"/"which"... ("..., and prices continued
# to fall"), nor a verb with an infinitive ("continued to fall", "asked to leave").
_REPORTING = "|".join(sorted(lexicon("reporting_verbs")))
_NOT_SPEAKER = "and|but|or|nor|so|yet|then|which|who|that|as|while|when|where|if|because|although"
_VERB = rf"(?:{_REPORTING})\b(?!\s+to\b)"
# An inverted attribution of any length: the verb, then a speaker without a clause's words
# ending in a name ("said chief executive John Smith", "said Bank of England governor Mervyn
# King"), or "according to" and its source; either may take an appositive ("said Mr Smith, the
# firm's chairman"). Not "said it was ...", "said the deal was approved by Microsoft".
_CLAUSE_WORDS = (
    "that|it|he|she|they|we|i|you|there|this|these|those|is|was|are|were|be|been|has|had|have"
    "|will|would|could|can|may|might|should|must|do|does|did|not|to"
)
_NP_CHAR = "[^\\s,;:\"\u201c\u201d()]"
_APPOSITIVE_WORD = rf"(?!(?:{_CLAUSE_WORDS}|{_NOT_SPEAKER})\b){_NP_CHAR}+"
_SPEAKER_WORD = rf"(?!(?-i:[a-z]\w{{2,}}ed)\b){_APPOSITIVE_WORD}"  # "approved", not a role noun
_INVERTED = (
    rf"(?:{_VERB}\s+(?:{_SPEAKER_WORD}\s+){{0,6}}?(?-i:[A-Z]){_NP_CHAR}*"
    rf"|according\s+to\s+(?:{_NP_CHAR}+\s+){{0,9}}?{_NP_CHAR}+)"
    rf"(?:,\s+(?:{_APPOSITIVE_WORD}\s+){{0,9}}?{_APPOSITIVE_WORD})?"
)
# A speaker's title set off by commas: "Fathi Bin Shatwan, Libya's oil minister, told Reuters";
# "and" joins its nouns ("chairman and chief executive").
_TITLE_WORD = rf"(?!(?:{_CLAUSE_WORDS}|{_NOT_SPEAKER.replace('and|', '')})\b){_NP_CHAR}+"
_TITLE = rf"(?:{_TITLE_WORD}\s+){{0,11}}?{_TITLE_WORD}"
_AUXILIARIES = (
    "is|was|are|were|be|been|has|had|have|will|would|could|can|may|might|should|must|do|does|did"
)
# Words that open no speaker: ", said in a statement" follows a speaker who is in the text
# before (", Jim Press, vice president of Toyota, said in a statement"); ", with mobile services
# added" is no attribution.
_NOT_A_SPEAKER = (
    "in|on|at|during|after|before|earlier|later|last|yesterday|today|tonight|recently|by|from"
    "|with|for|of|about|over|since"
)
# The speaker before the verb: up to four words without a comma (a comma between them is an
# appositive's or a list's: ", his spokesman, said the plans stink", "the UK, France and Spain,
# said the report"), then perhaps a title between commas; not an auxiliary ("Parmalat, the
# food group, has reported a doubling in profit"), a number ("65 flights on Thursday, 180 on
# Friday, said ...") nor a clause's word ("compared to 34% who said", "seems to have told"), nor
# a quoted phrase ('an "instant decision" she said': the speaker is "she").
_SPEAKER_CHARS = "[^\\s,\"\u201c\u201d]+"
_SPEAKER = (
    rf"(?![\d$\u00a3\u20ac]|(?:{_NOT_SPEAKER}|{_AUXILIARIES}|{_REPORTING}|{_NOT_A_SPEAKER})\b)"
    rf"{_SPEAKER_CHARS}(?:\s+(?!(?-i:{_NOT_SPEAKER}|to)\b){_SPEAKER_CHARS}){{0,3}}?(?:,\s+{_TITLE},)?"
)
# Verbs whose object is the hearer ("told Reuters"): with no speaker before them (", told the
# newspaper") the speaker is in the text before.
_HEARER_VERBS = "told|tells|asked"
# Where an attribution after the text it attributes starts: a comma, or a quoted phrase's closing
# mark with no comma ('an "instant decision" she said', '"a stellar year" said Roger Bennett'):
# zero-width after the mark, which stays with the text.
_QUOTE_CLOSED = "(?<=[^\\s,\"\u201c][\"\u201d])"
_ATTRIBUTION_START = rf"(?:,|{_QUOTE_CLOSED})"
_ATTRIBUTION = re.compile(
    rf"[.!?,]['\u2019]?[\"\u201d]\s+(?:\S+\s+){{0,4}}?(?:[^\s,]+,\s+{_TITLE},\s+)?{_VERB}"
    rf"[^\"\u201c\u201d]*$"
    rf"|{_ATTRIBUTION_START}\s+{_SPEAKER}\s+{_VERB}"
    rf"(?:\s+(?![\d$\u00a3\u20ac])[^\s,;]+(?:\s+[^\s,;]+){{0,3}})?[\s.!?\"'\u201d\u2019]*$"
    # Inverted, the speaker after the verb: lower-case ("said analysts", "says a study") or named.
    rf"|(?P<inverted>{_ATTRIBUTION_START}\s+(?!(?:{_HEARER_VERBS})\b){_VERB}"
    rf"(?!\s+(?:{_NOT_A_SPEAKER}|\w+(?:ing|ly))\b)(?:\s+{_SPEAKER_WORD}){{1,4}}"
    rf"|{_ATTRIBUTION_START}\s+{_INVERTED})[\s.!?\"'\u201d\u2019]*$",
    re.IGNORECASE,
)
# A parenthetical attribution after a connective's comma: "By contrast, he said, X", "As a result,
# says the committee, X". The sentence is X; "He said, X" is none.
_SPEECH_VERB = rf"(?:{'|'.join(sorted(lexicon('parenthetical_verbs')))})\b"
_PARENTHETICAL = re.compile(
    rf"(?:(?:[^\s,]+\s+){{1,3}}?{_SPEECH_VERB}|{_SPEECH_VERB}(?:\s+[^\s,]+){{1,4}}?),\s+(?=\S)",
    re.IGNORECASE,
)
# An attribution between an effect and its cause word: "He quit the game, he says, | because",
# "..., said Mr Thiemann, | because". Not "X, head of Y, said the posters were useful | because":
# there "said" is the effect's verb.
_TRAILING_ATTRIBUTION = re.compile(
    rf"(?:,\s+(?:{_SPEAKER_CHARS}\s+){{0,3}}?{_VERB}"
    # After a quoted phrase, a speaker without a clause's words: '"instant decision" she said'
    # is one; '"outrageous" and said' is none.
    rf"|{_QUOTE_CLOSED}\s+(?:(?!(?i:{_NOT_SPEAKER}|{_AUXILIARIES})\b){_SPEAKER_CHARS}\s+){{1,3}}?{_VERB}"
    rf"|{_ATTRIBUTION_START}\s+"
    rf"(?P<inverted>{_VERB}(?:\s+(?:the\s+)?[A-Z][^\s,]*){{1,3}}|(?i:{_INVERTED})))$"
)
# What an inverted attribution's cut would leave of a sentence whose subject has an appositive:
# only the speaker ("Mr Yeo, his transport spokesman" of "Mr Yeo, his transport spokesman, said
# the plans stink"). A subject: a capitalised noun phrase, not an opener ("Currently", "In 2004",
# "However"); an appositive: a noun phrase, perhaps with a relative clause ("the holding company
# which controls Yukos"), a relative clause ("whose products ...") or a participle ("speaking at").
_OPENERS = "|".join(
    sorted(lexicon("not_subject_start") | {w.split()[0].lower() for w in CONNECTIVES})
)
_NOUN_WORD = rf"(?!(?-i:[a-z]\w{{2,}}ed)\b){_TITLE_WORD}"  # "and" joins nouns; "-ed" is a verb
_SPEAKER_LEFT = re.compile(
    rf"[\"\u201c]?(?:(?:but|and|yet|so)\s+)?(?!(?:{_CLAUSE_WORDS}|{_NOT_SPEAKER}|{_OPENERS})\b)"
    rf"(?-i:[A-Z])(?![^\s,]*ly\b){_NP_CHAR}*(?:\s+{_NOUN_WORD}){{0,5}},\s+"
    rf"(?:(?:who|whose|whom|which)\b[^,;]*|(?-i:[a-z])\w+ing\b[^,;]*"
    rf"|(?:{_NOUN_WORD}\s+){{0,11}}?{_NOUN_WORD}(?:\s+(?:who|whose|which|that)\b[^,;]*)?)",
    re.IGNORECASE,
)
# A sentence that reports speech: ending in '..., said Mr Smith at Merrill Lynch on Thursday.'
_REPORTED = re.compile(
    rf"[,.!?][\"\u201d]?\s+(?:\S+\s+){{0,4}}?(?:{_REPORTING})\b[^\"\u201c\u201d;]*$", re.IGNORECASE
)
# A comma inside a cause's noun phrase, not at its clause's end: the items of a list (each up
# to 3 words, the last up to 5, the list ending the clause: "they stop worms, viruses and other
# threats penetrating PCs."), or adjectives after a determiner ("my natural, attacking game").
# Not a clause: an item opens with no pronoun, reporting verb or clause word.
_NOT_ITEM = (
    rf"(?!(?:{_CLAUSE_WORDS}|{_NOT_SPEAKER}|{_REPORTING}|according|i|me|us|him|her|them"
    r"|however|though|too|also|therefore|instead|meanwhile|indeed|perhaps)\b)"
)
_ITEM = rf"{_NOT_ITEM}[^\s,;:()]+(?:\s+{_NOT_ITEM}[^\s,;:()]+){{0,2}}"
_PHRASE_END = (
    rf"(?=[.!?\"'\u201d\u2019]*$|,\s+(?:{_NOT_SPEAKER}|{_REPORTING}|{_CLAUSE_WORDS}|according"
    r"|he|she|they|we|i|you)\b|[;:()\u2014\u2013]| - )"
)
_LIST_REST = re.compile(
    rf",\s+{_ITEM}(?:,\s+{_ITEM})*,?\s+(?:and|or)\s+{_ITEM}"
    rf"(?:\s+{_NOT_ITEM}[^\s,;:()]+){{0,2}}"
    rf"[.!?\"'\u201d\u2019]*{_PHRASE_END}",
    re.IGNORECASE,
)
# Adjectives of one word each, then the last with its noun, up to a comma, "and" or the end.
_ADJECTIVE_REST = re.compile(
    rf"(?:,\s+(?=(?-i:[a-z])){_NOT_ITEM}[^\s,;:()]+(?=,))*,\s+(?=(?-i:[a-z])){_ITEM}"
    r"(?=[,;:.!?\"'\u201d\u2019()\u2014\u2013]|\s+(?:and|or)\s|\s+-\s|$)",
    re.IGNORECASE,
)
_DETERMINERS = frozenset(("a", "an", "the", "my", "your", "his", "her", "its", "our", "their"))
# A quotation closing and a new sentence opening inside what a cause rule took: the cause ends there.
_QUOTE_BREAK = re.compile(r"[\"\u201d]\s+(?=[A-Z\"\u201c])")
# "due to" followed by a verb means "scheduled to": "the firm is due to report results".
_SCHEDULED_VERBS = lexicon("scheduled_verbs")
# An effect that denies ("X denied it had quit | because of Y") states no cause: the text says
# the opposite, or reports a claim it does not make.
_DENIAL_WORDS = lexicon("denial_words")
# A short effect led by a word referring back ("Which is strange | because Lille is at the
# crossroads of Europe", "It's a shame | because"): its content is in a sentence not shown.
_BACK_REFERENCES = lexicon("back_references")
_INTERJECTIONS = lexicon("interjections")
_MAX_BACK_REFERENCE_WORDS = 4  # "It will be disruptive"; "It says the ban is unenforceable" stays
_APOSTROPHES = re.compile("['\u2019]")
# A cause after "because of", "due to", ... is a noun phrase: "and" + a verb starts the main
# clause's next verb phrase ("because of a knee injury | and is raring to go").
_PHRASE_CONNECTIVES = frozenset(_CAUSE_WORDS.split("|")) - {"because"}
_NEXT_VERB_PHRASE = re.compile(
    r"\s+and\s+(?:is|are|was|were|has|have|had|will|would|could|can|may|might|should|must|did|does"
    r"|do)\b"
)
# A verb of saying or thinking right before the cause word, no comma between ("Sometimes people
# say | because of what has happened in Iraq this is the next place"): the cause word opens what
# is said, so the cause is the claim's and the effect is a speaker. Link words may come between
# ("analysts think largely | because of"); "he says, | because" is an attribution, cut instead.
_SAYING_OPEN = re.compile(
    rf"\b(?:{'|'.join(sorted(lexicon('clause_verbs')))})"
    rf"(?:\s+(?:{'|'.join(sorted(_LINK_WORDS))}))*\s*$",
    re.IGNORECASE,
)
# Negation whose scope is the reason, not the event: the text denies that the cause is one.
# "should not be reduced | because of a guilty plea", "no jobs would be lost | as a result of
# the machines", "I don't think conditions have worsened | because of the fall". Only before a
# noun-phrase cause: "We should not wait | because prices are rising" gives a reason.
_DENIED_REASON = re.compile(
    r"\b(?:should|must|need|ought)\s+not\b|\b(?:shouldn|mustn|needn)['\u2019]t\b"
    r"|\bno\s+(?:\w+\s+){1,3}(?:would|will|should|could|can)\b"
    r"|(?:\bnot|n['\u2019]t)\s+(?:think|believe)\b(?!\s+in\b)|\bcertainly\s+not\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:not|never|no)\b|n['\u2019]t\b", re.IGNORECASE)
# Adverbs that put a negation's focus on the reason: "was not cut simply | because of X".
_FOCUS_WORDS = frozenset(
    ("just", "simply", "only", "solely", "purely", "merely", "necessarily", "automatically",
     "exclusively", "entirely", "wholly")
)
# "The effect is not only X | thanks to Y (but also ...)", "Asked whether he had quit | because":
# the first half of a pair, or a question, not a stated effect. Nor is an opener's phrase whose
# main clause comes after the cause ("Having won the role | because she seemed suited, ..."):
# with no comma or dash in it, the effect is that phrase alone.
_NOT_AN_EFFECT = re.compile(
    r"(?:.*\bnot\s+only\b|Asked\s+(?:whether|if)\b"
    r"|(?:Having|With|Without|Whether|Despite|Given|Although|Though|While|Whereas)\b"
    r"(?![^,;\u2014\u2013]*\s-\s)[^,;\u2014\u2013]*$)",
    re.IGNORECASE,
)
# An effect that is only a sentence opener, the main clause after the cause: one word
# ("Eventually | because of X, Y") or a preposition and a short noun phrase ("In the end | because
# of the way that ..., we did not need to change", "At the same time | because"), too short to hold
# a clause; "In the end we lost | because" has one.
_OPENER_ONLY = re.compile(
    r"[^\s,]+|(?:in|at|on|for|by|after|before|during|since|until|under|over|from|of|within"
    r"|throughout|despite|without|with|among|amid|against|like|unlike|across|through|following)"
    r"\s+(?:(?:the|a|an|this|that|these|those|its|his|her|their|our|my|your|all|each|every|some"
    r"|any)\s+[^\s,]+(?:\s+[^\s,]+)?|[^\s,]+)",
    re.IGNORECASE,
)
# A main clause's subject after an opener and its cause: a pronoun, a determiner or a
# capitalised word ("we did not need", "the firm cut", "Liverpool won"), not a conjunction.
_SUBJECT_START = re.compile(
    rf"(?:(?:i|we|you|he|she|they|it|there|{'|'.join(sorted(_DETERMINERS))})\b|(?!(?:{_NOT_SPEAKER}|{_OPENERS})\b)(?-i:[A-Z])\w)",
    re.IGNORECASE,
)
# "The reason X is | because Y", "One of the reasons that X is | because Y": the effect is X.
_REASON_OPENER = re.compile(
    r"(?:(?:One|Some|Part) of the|The|Another|A)\s+(?:(?:main|real|only|other|key)\s+)?reasons?"
    r"\s+(?:that\s+|why\s+)?(?!(?:for|of|behind|given|is|was|are|were)\b)(?P<rest>\S+\s+\S+\s+\S.*)",
    re.IGNORECASE | re.DOTALL,
)
# A cause cut at a comma right after a subordinate opener is half a clause: "because | if you
# go crazy against players like him, | you lose".
_SUBORDINATORS = frozenset(
    ("if", "when", "although", "though", "unless", "once", "whenever", "while", "whether")
)
# A speech's introduction before the quotation the effect is: 'He told BBC Radio: "We lost'.
_SPEECH_INTRO = re.compile(
    rf"[^\"\u201c]{{0,120}}?\b(?:{_REPORTING}|says|say)\b[^\"\u201c]{{0,60}}?:\s*[\"\u201c](?=\S)",
    re.IGNORECASE,
)
# The same before a quotation that the cause word cuts, still open at the effect's end: after a
# colon however far from the verb ('Harriet Harman told researchers of the sheer hostility
# prompted by her advancement to the Cabinet: "Well, you've only succeeded | because'), or a
# comma right after the verb and its speaker or hearer ("She said, 'yeah, it's hilarious, |
# because"); single quotes too.
_OPEN_SPEECH_INTRO = re.compile(
    rf"[^\"\u201c\u201d]{{0,120}}?\b(?:{_REPORTING}|says|say)\b"
    rf"(?:[^\"\u201c\u201d]*?:|(?:\s+[^\s,\"\u201c\u201d]+){{0,3}}?,)\s*[\"\u201c'\u2018](?=\w)",
    re.IGNORECASE,
)
# A closing single quote: after a word or a final mark, before no letter ("hilarious'", not "it's").
_SINGLE_CLOSE = re.compile(r"(?<=[\w.,!?])['\u2019](?!\w)")
# An opening single quote: at the start or after a space or an opening mark, before a letter; not
# an elision ("'em", "'bot nets", "rock 'n' roll"; `elisions` in `lexicon.json`).
_SINGLE_OPEN = re.compile(
    rf"(?:^|(?<=[\s(\[\"\u201c]))['\u2018](?!(?:{'|'.join(sorted(lexicon('elisions')))})\b)(?=[A-Za-z])",
    re.IGNORECASE,
)
# A sentence-opening "But" / "And" / "Yet" without its comma belongs to the text, not the effect.
_BARE_OPENER = re.compile(r"(?:But|And|Yet)\s+(?=\S)")
# A quotation that closes, its attribution, and a quotation that reopens and runs on past the
# cause word: '"You may be halfway around the world," he said, "that\'s put a whole new dimension
# on disaster relief ... | because ...'. The effect is the reopened quotation, not text across
# both quotations and the attribution.
_REOPENED_QUOTE = re.compile(
    rf"[,.!?]['\u2019]?[\"\u201d]\s+(?:[^\s\"\u201c\u201d]+\s+){{0,4}}?{_VERB}"
    rf"[^\"\u201c\u201d]{{0,60}}?[,:]\s*[\"\u201c](?=\S[^\"\u201c\u201d]*$)",
    re.IGNORECASE,
)

# An effect cut before its main verb, which comes after the cause. The subject and an open
# relative clause: "Air passengers who are unable to board their flights | because of
# overbooking ... can now demand", "The Beckhams - who qualify | thanks to"; the subject noun
# phrase, then "who" / "which" / "where" and one or two words, or a relative pronoun and an
# auxiliary ("stunts that are possible | thanks to"), and no other auxiliary before the end
# ("Those who aren't funded might be hungrier | because" has its main verb). Not a relative
# clause with its own subject ("patches which it releases ... are important"), a closed one
# ("Cole, who struggled with an ankle problem, was unable to rest"), one of lexical verbs only
# ("People who lost their jobs moved away": where the main verb starts is unknown), nor "that"
# after a verb of saying ("Sir Edward said that was impossible | because").
_AUXILIARY = rf"(?:{_AUXILIARIES}|being|cannot|shall|\w+n['\u2019]t)"
_FINITE = rf"(?:{_AUXILIARY}|\w+['\u2019](?:s|re|ve|ll|d))"
_RELATIVE_SUBJECTS = "|".join(sorted(lexicon("pronouns") | {"the", "a", "an", "our", "my", "your"}))
_THAT_VERBS = lexicon("that_verbs") | lexicon("reporting_verbs")
_SUBJECT_WORD = rf"(?!(?:{'|'.join(sorted(_THAT_VERBS))})\b){_NOUN_WORD}"
_CLAUSE_REST = rf"(?:(?!{_FINITE}\b)[^\s,;:()\u2013\u2014]+(?:\s+|$))"  # a word, no verb's
_OPEN_RELATIVE = re.compile(
    rf"(?:{_SUBJECT_WORD}\s+){{0,9}}?{_SUBJECT_WORD}(?:,\s+\w+,)?(?:,|\s+[-\u2013\u2014])?\s+"
    rf"(?:(?:who|which|where)\s+(?!(?:{_RELATIVE_SUBJECTS})\b){_CLAUSE_REST}{{1,2}}"
    rf"|(?:who|which|where|that)\s+{_FINITE}(?:\s+{_CLAUSE_REST}*|$))",
    re.IGNORECASE,
)
# An effect that is only a condition or time clause, its main clause after the cause: "If the
# MPC were to judge that a rate rise was justified | because of the strength of the economy -
# ... - I do not believe", "When reporters say to me I'm only doing this | because it's my job
# ... that's the same abdication". With no comma or dash, a main clause shows as "then", a
# modal, or a subject pronoun that no "that" / "who" / verb of saying introduces ("If they
# appeal | it won't be heard", "If it rains | we stay in").
_CONDITION = re.compile(r"(?:If|When|Whenever|Unless|Once)\s+(?P<rest>[^,;:\u2013\u2014]*)")
_MODALS = frozenset(
    ("then", "will", "would", "could", "can", "may", "might", "should", "must", "shall")
)
_SUBJECT_PRONOUN = re.compile(
    r"(?:i|you|we|they|he|she|it|there)(?:['\u2019]\w+)?|that['\u2019]\w+"
)
_NOT_MAIN_SUBJECT_AFTER = _THAT_VERBS | frozenset(
    ("that", "which", "who", "whom", "and", "or", "me", "us", "him", "her", "them", "to", "of")
)
# A subordinate clause whose verb was a link word before the cause: "who can take action if the
# traffic [is] | due to a net-based attack", "The report said that while gaps in the coverage
# [were] largely | due to landscape issues, there was need ...": its subject alone.
_SUBORDINATE_SUBJECT = re.compile(
    rf"\b(?:if|when|whenever|while|whilst|whether|unless|although|though|once|whereas)"
    rf"(?:\s+{_NOUN_WORD}){{1,8}}$",
    re.IGNORECASE,
)
# The main clause's verb right after a noun-phrase cause: "the judiciary, | as a result of the
# appointment, | may be seen as siding with the government": the effect before is its subject
# alone. Not a question tag (", aren't you?").
_VERB_AFTER_CAUSE = re.compile(
    rf"\s*,\s+{_AUXILIARY}\b(?!\s+(?:{_RELATIVE_SUBJECTS})\b)", re.IGNORECASE
)

# A parenthesis after a "because" clause's subject, then its verb: "because younger users, |
# often the children of ageing mobile owners, | encouraged older people to try it", "because
# other forums - | Russian courts and the European Court of Human Rights - | were unfriendly".
# A verb: an auxiliary, a negation, or a lower-case word in "-ed", perhaps after an adverb. Not
# a subordinate clause ("Remember, | when you do start working, | doesn't matter how ...").
_CLAUSE_VERB = rf"(?:\w+ly\s+)?(?:{_AUXILIARY}|(?-i:[a-z])\w+ed)\b"
_SUBJECT_PARENTHESIS = re.compile(
    rf"(?P<mark>,|\s[-\u2013\u2014]|[\u2013\u2014])\s*(?!(?:{'|'.join(sorted(_SUBORDINATORS))})\b)"
    rf"(?:(?!\s[-\u2013\u2014]\s)[^,;:()\u2013\u2014\s]+\s+){{1,12}}?"
    rf"(?:(?!\s[-\u2013\u2014]\s)[^,;:()\u2013\u2014\s]+)(?P=mark)\s*(?={_CLAUSE_VERB})",
    re.IGNORECASE,
)
# What goes on from a subject cut at its comma to the clause's verb: no conjunction, pronoun or
# speaker opens it (", and prices rose", ", he said"), a verb comes in it.
_SUBJECT_REST = re.compile(
    rf"\s*(?!(?:{_NOT_SPEAKER}|{_CLAUSE_WORDS}|{_REPORTING}|he|she|they|we|i|you)\b)"
    rf"(?:[^\s]+\s+){{0,12}}?{_CLAUSE_VERB}",
    re.IGNORECASE,
)
# A subject has no verb, conjunction or pronoun's clause in it, and ends in no preposition.
_MAX_SUBJECT_WORDS = 6
_MAX_BRACKET_CHARS = 60  # a bracket closed within this is passed, not a clause's end
_NOT_SUBJECT_WORD = re.compile(
    rf"(?:{_AUXILIARY}|{_NOT_SPEAKER}|{_REPORTING}|not|to|[a-z]\w+ed|\w+n['\u2019]t"
    rf"|\w+['\u2019](?:re|ve|ll|d)|(?:it|he|she|that|there|what)['\u2019]s|i|you|we|they|he|she|it)"
)
_NOT_SUBJECT_END = frozenset(lexicon("not_subject_start")) | _DETERMINERS

# Control characters, replacement characters and lone surrogates: what decoded binary leaves;
# and byte order marks, which a file read as "utf-8" keeps (a title "\ufeffOil prices ...").
# The miner blanks them out of the text once, so rules never see them.
JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff\ufffd\ud800-\udfff]")
_CLOSERS = "\"'\u201d\u2019)]"
_FINAL_CHARS = " \t\n.!?;:,\"'\u201d\u2019"
_LINK_PUNCTUATION = ",\"'\u201c\u201d\u2018\u2019"


def is_prose(sentence: str, config: MinerConfig) -> bool:
    """A sentence of allowed length that opens like one and ends with ``.``, ``!`` or ``?``."""
    if not config.min_sentence_chars <= len(sentence) <= config.max_sentence_chars:
        return False
    first = sentence[0]
    if not (first.isupper() or first.isdigit() or first in "\"'\u201c\u2018("):
        return False
    return sentence.rstrip(_CLOSERS)[-1:] in (".", "!", "?")


def clean(text: str) -> str:
    """Collapse whitespace runs to one space."""
    return " ".join(text.split())


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def clause(text: str) -> str:
    """A sentence piece without its final marks and trailing quote."""
    return clean(text).rstrip(_FINAL_CHARS).lstrip("\"'\u201c\u2018 ")


def drop_attribution(text: str) -> str:
    """`text` without a quotation's attribution: '...," said Mr Smith.' -> '...'.

    Not where the cut would leave only the speaker ("Mr Yeo, his spokesman, | said the plans
    stink": the claim is the sentence) or a clause cut open ("... reports, and | , according to
    our correspondent, contain few surprises")."""
    match = _ATTRIBUTION.search(text)
    return _without_attribution(text, match) if match else text


def _without_attribution(text: str, match: re.Match) -> str:
    kept = text[: match.start()]
    if match["inverted"] and _SPEAKER_LEFT.fullmatch(clause(kept)):
        return text
    words = kept.split()
    return text if not words or _dangles(words[-1].strip(_FINAL_CHARS)) else kept


def connective_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """NLI, effect-of-cause and paraphrase tasks from ``X. <Connective>, Y.`` sentence pairs."""
    for index in range(1, len(sentences)):
        match = _LEADING.match(sentences[index])
        if match is None:
            continue
        subtypes, comma_required = CONNECTIVES[match["conn"]]
        if comma_required and not match["comma"]:
            continue
        premise = sentences[index - 1]
        rest = _after_connective(match["rest"]) if match["comma"] else match["rest"]
        hypothesis = match["quote"] + capitalize(rest)
        if (
            not (is_prose(premise, config) and is_prose(hypothesis, config))
            or premise == hypothesis
        ):
            continue
        for subtype in subtypes:
            if subtype == "paraphrase.similar" and _REPORTED.search(premise):
                continue  # '..., said Mr X. In other words, ...': a gloss of a report, not a restatement
            yield Candidate(subtype, _pair_fields(subtype, premise, hypothesis, match["conn"]))


def _after_connective(rest: str) -> str:
    """What follows a connective and its comma, without a parenthetical attribution:
    "he said, digging up roads takes weeks" -> "digging up roads takes weeks"."""
    parenthetical = _PARENTHETICAL.match(rest)
    return rest[parenthetical.end() :] if parenthetical else rest


def _pair_fields(subtype: str, first: str, second: str, connective: str) -> dict[str, str]:
    if subtype.startswith("nli."):
        return {"premise": first, "hypothesis": second, "connective": connective}
    if subtype == "commonsense.effect":
        return {"cause": first, "effect": second, "connective": connective}
    if subtype == "paraphrase.similar":
        return {"sentence": first, "paraphrase": second, "connective": connective}
    return {"sentence": first, "contrast": second, "connective": connective}


def cause_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """Cause-of-effect tasks: ``Y because X``, ``Because X, Y`` and ``Y. This is because X.``"""
    for index, sentence in enumerate(sentences):
        if len(sentence) > config.max_sentence_chars or not _has_cause_word(sentence):
            continue
        found = _cause_in(sentence, sentences[index - 1] if index else "", config)
        if found is not None:
            effect, cause, connective = found
            if min(len(effect), len(cause)) >= config.min_clause_chars:
                yield Candidate(
                    "commonsense.cause",
                    {
                        "effect": effect,
                        "cause": capitalize(cause),
                        "connective": connective.lower(),
                    },
                )


def _has_cause_word(sentence: str) -> bool:
    # Plain substring tests, either case of the first letter: ~10x faster than a regex alternation.
    return (
        "ecause" in sentence
        or "ue to" in sentence
        or "wing to" in sentence
        or "hanks to" in sentence
        or "ccount of" in sentence
        or "esult of" in sentence
    )


def _cause_in(sentence: str, previous: str, config: MinerConfig) -> tuple[str, str, str] | None:
    """(effect, cause, connective) of one sentence, or None."""
    if (back := _CAUSE_BACK.match(sentence)) and is_prose(previous, config):
        return _checked(clause(drop_attribution(previous)), back["cause"], back["conn"])
    if lead := _CAUSE_LEAD.match(sentence):
        effect = capitalize(clause(drop_attribution(lead["effect"])))
        return _checked(effect, lead["cause"], lead["conn"])
    if inner := _CAUSE_INNER.search(sentence):
        before = sentence[: inner.start()]
        if _SAYING_OPEN.search(before):
            return None  # "people say | because of X, Y": the cause is inside what they say
        effect = _effect_before(before.rstrip(" ,"), inner["conn"])
        if effect is None:
            return None
        # "He quit the game, he says, | because": the attribution goes.
        if trailing := _TRAILING_ATTRIBUTION.search(effect):
            effect = _without_attribution(effect, trailing)
        raw = sentence[inner.end() :]
        if main := _main_clause_after(effect, raw):
            # "In the end | because of X, | we did not need to change": as "Because X, Y".
            return _checked(main, _clause_span(raw), inner["conn"])
        found = _checked(capitalize(clause(effect)), raw, inner["conn"])
        if found is None or _cut_before_main_verb(found[0], raw, inner["conn"]):
            return None
        return found
    return None


def _main_clause_after(effect: str, raw_cause: str) -> str | None:
    """The main clause after a cause whose effect before it is only a sentence opener ("But in
    the end | because of the way that X performed, | we did not need to change things"), as
    after a leading "Because X, Y"; None where the effect is more, or no comma ends the cause."""
    opener = clause(effect)
    if bare := _BARE_OPENER.match(opener):
        opener = opener[bare.end() :]
    if not _OPENER_ONLY.fullmatch(opener):
        return None
    rest = raw_cause[len(_clause_span(raw_cause)) :]
    if not rest.startswith(", ") or not _SUBJECT_START.match(rest, 2):
        return None
    return capitalize(clause(drop_attribution(rest[2:])))


def _cut_before_main_verb(effect: str, raw_cause: str, connective: str) -> bool:
    """Whether an effect cut at an in-sentence cause word lacks its main clause, which goes on
    after the cause: a subject with an open relative clause, a condition alone, or a subject
    whose verb follows a noun-phrase cause ("the judiciary, | as a result of X, | may be seen")."""
    if _OPEN_RELATIVE.fullmatch(effect) or _condition_only(effect):
        return True
    return connective.lower() in _PHRASE_CONNECTIVES and bool(
        _VERB_AFTER_CAUSE.match(raw_cause[len(_clause_span(raw_cause)) :])
    )


def _condition_only(effect: str) -> bool:
    """Whether `effect` is an If / When clause and nothing more: no comma or dash ends it, and
    no "then", modal or new subject pronoun opens a main clause after it."""
    condition = _CONDITION.fullmatch(effect)
    if condition is None or " - " in effect:
        return False
    words = condition["rest"].lower().split()
    for index, word in enumerate(words):
        if word in _MODALS or word.endswith(("'ll", "\u2019ll")):
            return False
        after = words[index - 1] if index else None  # the condition's own subject: none
        if after and after not in _NOT_MAIN_SUBJECT_AFTER and _SUBJECT_PRONOUN.fullmatch(word):
            return False  # "If they appeal | it won't be heard"; not "thing that | they feel"
    return True


def _effect_before(text: str, connective: str) -> str | None:
    """The effect before an in-sentence cause word, or None where that cuts it mid-clause.

    Link words go ("fell largely | due to" -> "fell", "rose, not least | because" -> "rose").
    What then ends in a word like "and" or "wasn't", or in the stub a dropped "is" leaves
    ("Perhaps it [was] | because"), is a fragment; "not | because X" denies that X is the cause,
    and so does a negated effect ending in a focus adverb ("was not cut simply | because of X").
    "Likely" after "is" / "are" is the predicate ("more mergers are likely | because X"), not
    "probably": it stays before "because", and is ambiguous before "due to" (dropped).
    """
    words = text.split()
    dropped: set[str] = set()  # membership only
    # Link words may carry the commas or quotes around them: "His answer, in part, is | because".
    while words and (word := words[-1].lower().strip(_LINK_PUNCTUATION)) in _LINK_WORDS:
        if word == "likely" and len(words) > 1 and words[-2].lower() in _PREDICATIVE:
            if connective.lower() != "because" or len(words) < 3 or words[-3].lower() in _STUB_WORDS:
                return None  # "The fall is likely | due to X", "It is likely | because X"
            break
        dropped.add(word)
        words.pop()
    if "not" in dropped and "least" not in dropped:
        return None
    if (
        not dropped.isdisjoint(_FOCUS_WORDS) or (words and words[-1].lower() in _FOCUS_WORDS)
    ) and _NEGATION.search(" ".join(words)):
        return None
    if not words or _dangles(words[-1]) or _left_open(words):
        return None
    if not dropped.isdisjoint(_BE) and (
        words[-1].lower() in _STUB_WORDS or _SUBORDINATE_SUBJECT.search(" ".join(words))
    ):
        return None  # "Perhaps it [was] | because", "action if the traffic [is] | due to"
    if _copula_only(words, dropped):
        return None  # "In November, the fall in exports [was largely] | due to": no verb left
    if words[-1].lower() == "that":
        return None  # "pointed out that | because X": "that" opens a clause, or is a pronoun
    # The comma before a dropped link word goes: "prevalent, he said, | [was] due to" ends in
    # an attribution that is cut next.
    return " ".join(words).rstrip(",")


def _copula_only(words: list[str], dropped: set[str]) -> bool:
    """Whether the effect's verb was the "is" / "was" that links it to the cause, so that only
    its subject is left: "the fall in exports [was largely] | due to", "Such absences are often |
    due to" (an adverb of frequency after it). The reason's own "is" is none: "The reason that X
    [is] | because" gives X."""
    end = len(words)
    while end > 1 and words[end - 1].lower() in _COPULA_ADVERBS:
        end -= 1
    if dropped.isdisjoint(_BE) and not (end < len(words) and words[end - 1].lower() in _BE):
        return False
    return not _REASON_WORD.search(" ".join(words))


def _left_open(words: list[str]) -> bool:
    """Whether an effect's last words open a clause the cut left empty: a conjunction and its
    adverbs ("known, and yet | because he died young, he's been forgotten", "but again |
    because of"), or a stub with its verb contracted ("but that's | only because")."""
    end = len(words)
    while end > 1 and words[end - 1].lower() in _CLAUSE_ADVERBS:
        end -= 1
    if end < len(words) and _dangles(words[end - 1]):
        return True
    stem, _, verb = _APOSTROPHES.sub("'", words[-1]).partition("'")
    return bool(verb) and stem.lower() in _STUB_WORDS


def _dangles(word: str) -> bool:
    """Whether a clause ending in `word` was cut short ("and", "the", "wasn't")."""
    return word.lower() in _DANGLING_WORDS or word.endswith(("n't", "n\u2019t"))


def _checked(effect: str, cause: str, connective: str) -> tuple[str, str, str] | None:
    if reopened := _REOPENED_QUOTE.search(effect):
        effect = capitalize(effect[reopened.end() :])  # '..." he said, "That's put' -> "That's put"
    if (lead := _LEADING.match(effect)) and lead["comma"]:
        effect = capitalize(_after_connective(lead["rest"]))  # "However, X fell" -> "X fell"
    elif bare := _BARE_OPENER.match(effect):
        effect = capitalize(effect[bare.end() :])  # "But the full-back pulled out" -> "The ..."
    if (":" in effect and (intro := _SPEECH_INTRO.match(effect))) or (
        (intro := _OPEN_SPEECH_INTRO.match(effect)) and _open_quotation(effect[intro.end() - 1 :])
    ):
        effect = capitalize(effect[intro.end() :])  # 'He said: "We lost' -> 'We lost'
    if reason := _REASON_OPENER.match(effect):
        effect = capitalize(reason["rest"])  # "One of the reasons that blogs are popular"
    if any(word.strip(_FINAL_CHARS) in _DENIAL_WORDS for word in effect.lower().split()):
        return None
    if _NOT_AN_EFFECT.match(effect) or _OPENER_ONLY.fullmatch(effect):
        return None
    if _refers_back(effect):
        return None
    phrase = connective.lower() in _PHRASE_CONNECTIVES  # a noun-phrase cause: "because of X"
    if phrase and _DENIED_REASON.search(effect):
        return None
    if phrase and (verb := _NEXT_VERB_PHRASE.search(cause)):
        cause = cause[: verb.start()]
    clausal = connective.lower() == "because"  # a clause, not a noun phrase, follows
    raw, cause = cause, _before_result(_cause_text(cause, clausal))
    if not cause or _dangles(cause.rsplit(" ", 1)[-1]) or _open_that(cause):
        return None  # "it was only released on PC and | , compared to ..."
    if cause.split(" ", 1)[0].lower() in _SUBORDINATORS and _CLAUSE_END.search(raw):
        return None  # "If you go crazy against players like him" | , you lose
    if clausal and len(cause) < len(clause(raw)) and _subject_only(raw) and _bare_subject(cause):
        return None  # "because invading foreign nations | , imprisoning ... cannot destroy"
    if connective.lower() == "due to" and cause.split(" ", 1)[0] in _SCHEDULED_VERBS:
        return None
    return close_single_quote(effect), cause, connective


def _open_that(cause: str) -> bool:
    """Whether `cause` ends in a "that" opening a clause the cut left empty: after a determiner
    and a noun ("because of the way that | (Dietmar) Hamann ... performed", "the fact that");
    not a pronoun "that" ("they suffered for that", "we are good at that")."""
    words = cause.lower().split()
    return len(words) >= 3 and words[-1] == "that" and words[-3] in _DETERMINERS


def _refers_back(effect: str) -> bool:
    """Whether `effect` is a few words opened by a pronoun referring back ("Which is strange")."""
    words = effect.split()
    if len(words) > 1 and words[0].lower().rstrip(",") in _INTERJECTIONS and words[0][-1] == ",":
        words = words[1:]  # "Yeah, it's hilarious": the interjection says nothing either
    if not words or len(words) > _MAX_BACK_REFERENCE_WORDS:
        return False
    first = _APOSTROPHES.split(words[0].strip("\"\u201c"), 1)[0]  # "It's" -> "It"
    return first.lower() in _BACK_REFERENCES


def _before_result(cause: str) -> str:
    """`cause` without the result clause that "so" and a subject open after it: "because of
    improved technologies | so they are proving to be more cost-effective" (the effect's own
    effect, run on without a comma)."""
    words = cause.split(" ")
    for index in range(1, len(words) - 1):
        if words[index] == "so" and _SUBJECT_PRONOUN.fullmatch(words[index + 1].lower()):
            return " ".join(words[:index]).rstrip(",")
    return cause


def _cause_text(raw: str, clausal: bool = False) -> str:
    """The cause: `raw` up to the end of its clause, or to a quotation closing before a new
    sentence ('community." A spokesman said'), with its quotes balanced. A `clausal` cause (after
    "because") keeps a parenthesis between its subject and its verb (`_clause_span`)."""
    span = _clause_span(raw, clausal)
    if end := _QUOTE_BREAK.search(span):
        span = span[: end.start() + 1]
    return close_single_quote(balance_quotes(clause(span)))


def _clause_span(raw: str, clausal: bool = False) -> str:
    """`raw` up to its clause's end; a comma inside a noun phrase is none: one between the
    items of a list ("they stop worms, viruses and other threats") or after a determiner and
    an adjective ("a stable, low-inflation economy") is passed. A list that does not end
    cleanly ("overbooking, cancellations or flight delays can now demand ...") is cut at its
    first comma, as before: where it ends is unknown. In a `clausal` cause a parenthesis
    between commas or dashes after the subject is passed too ("younger users, often the
    children of ageing mobile owners, encouraged older people"), where a verb follows it. A
    parenthesis closed inside the clause does not end it ("the way that (Dietmar) Hamann and
    (Igor) Biscan performed")."""
    end = _clause_end(raw)
    if end is None:
        return raw
    parenthesis = _SUBJECT_PARENTHESIS.match(raw, end.start()) if clausal else None
    if parenthesis and _bare_subject(raw[: end.start()]):
        return raw[: parenthesis.end()] + _clause_span(raw[parenthesis.end() :])
    if end.group() != ",":
        return raw[: end.start()]
    before, rest = raw[: end.start()], raw[end.start() :]
    if phrase := _LIST_REST.match(rest):
        return before + phrase.group()
    words = before.split()
    after_adjective = len(words) >= 2 and words[-2].lower() in _DETERMINERS  # "a stable | ,"
    if after_adjective and (phrase := _ADJECTIVE_REST.match(rest)):
        return before + phrase.group()
    return before


def _clause_end(raw: str) -> re.Match | None:
    """The first mark in `raw` that may end its clause (`_CLAUSE_END`), passing brackets that
    close within `_MAX_BRACKET_CHARS`: "(Dietmar) Hamann" is a name, not a clause's end."""
    end = _CLAUSE_END.search(raw)
    while end is not None and end.group() == "(":
        close = raw.find(")", end.end(), end.end() + _MAX_BRACKET_CHARS)
        if close == -1 or "(" in raw[end.end() : close]:
            break
        end = _CLAUSE_END.search(raw, close + 1)
    return end


def _bare_subject(text: str) -> bool:
    """Whether `text` is a few words with no verb, conjunction or preposition ending it: a
    clause's subject ("younger users", "other forums"), not a clause ("it rained")."""
    words = text.lower().split()
    if len(words) == 1 and _SUBJECT_PRONOUN.fullmatch(words[0]):
        return True  # "because he, like many others, wanted"
    return 0 < len(words) <= _MAX_SUBJECT_WORDS and not any(
        _NOT_SUBJECT_WORD.fullmatch(word.strip(_LINK_PUNCTUATION)) for word in words
    ) and words[-1] not in _NOT_SUBJECT_END


def _subject_only(raw: str) -> bool:
    """Whether a "because" cause cut at its first comma or dash is its subject alone: a bare
    subject, then text that goes on to the clause's verb ("because | invading foreign nations,
    | imprisoning the innocent and 'hunting' in the 'shadows' cannot destroy ...")."""
    end = _clause_end(raw)
    if end is None or end.group().strip() not in (",", "-", "\u2013", "\u2014"):
        return False
    if not _bare_subject(raw[: end.start()]):
        return False
    rest = raw[end.end() :]
    stop = _CLAUSE_END.search(rest)
    return bool(_SUBJECT_REST.match(rest[: stop.start()] if stop else rest))


def _open_quotation(text: str) -> bool:
    """Whether `text`, which starts with an opening quote, never closes it."""
    if text[:1] in "'\u2018":
        return not _SINGLE_CLOSE.search(text, 1)
    return not any(mark in text[1:] for mark in '"\u201c\u201d')


def close_single_quote(text: str) -> str:
    """`text` with a single-quoted phrase it opens and never closes closed at its end: a cause
    rule's cut falls inside it, or `clause` stripped its closing mark ("to mean 'most
    gratuitously played at weddings and funerals" -> "... funerals'")."""
    opening = None
    for opening in _SINGLE_OPEN.finditer(text):
        pass
    if opening is None or _SINGLE_CLOSE.search(text, opening.end()):
        return text
    return text + ("\u2019" if opening.group() == "\u2018" else "'")


def balance_quotes(text: str) -> str:
    """`text` with an unpaired quote paired: the opening one `clause` stripped restored
    ('weak demand" in Asia' -> '"weak demand" in Asia'), or an open quotation closed
    ('a "big strategy' -> 'a "big strategy"'). A sentence of a quotation that runs over
    several sentences gets its missing mark ('"We lost.' -> '"We lost."')."""
    if text.count('"') % 2:
        first = text.index('"')
        return f'"{text}' if first > 0 and not text[first - 1].isspace() else f'{text}"'
    opening, closing = text.count("\u201c"), text.count("\u201d")
    if closing > opening:
        return f"\u201c{text}"
    return text + "\u201d" if opening > closing else text


def title_candidates(
    title: str | None, sentences: Sequence[str], config: MinerConfig
) -> Iterator[Candidate]:
    """Title-from-text and opening-from-title tasks (the text's title is known)."""
    if not title:
        return
    yield Candidate("summarize.title", {"title": title})
    opening: list[str] = []
    for sentence in sentences[:2]:
        if not is_prose(sentence, config) or sum(map(len, opening)) + len(sentence) > 400:
            break
        opening.append(sentence)
    if opening:
        yield Candidate("summarize.article", {"title": title, "opening": " ".join(opening)})


def completion_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """Continuation tasks: every point between two adjacent prose sentences."""
    previous_ok = False
    for index, sentence in enumerate(sentences):
        ok = is_prose(sentence, config)
        if ok and previous_ok and sentence != sentences[index - 1]:
            yield Candidate("completion", {"before": sentences[index - 1], "after": sentence})
        previous_ok = ok
