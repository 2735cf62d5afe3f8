"""Does an answer have the shape its question asks for? A check the judge can make without a large model.

The audit labels (audit/labels) show the failure a likelihood judge misses: an answer about the right topic
that does not answer the question ("What is Australia?" → a cricket report that starts "Australia has
escaped with a draw"; "How many children does John Turnidge have?" → a sentence naming a children's
hospital). The question's form says what kind of answer it wants, and that kind can be read off the text:

- ``definition`` ("What is X?", "Who was X?", "Tell me about X."): a sentence that defines X ("X is a …", "X (…) was the …");
- ``location`` ("Where is X?"): X placed somewhere ("X is a state located in …", "… lies on …");
- ``count`` ("How many …?"): a number;
- ``time`` ("When …?", "What year …?"): a year, a date or a century;
- ``person`` ("Who wrote …?"): a name (two capitalised words) the question does not already contain;
- ``role`` ("Who is the President of X?"): such a name, and the role tied to X in the answer ("President of
  X", "X's President", "Argentine President"): a report that names President Bush does not say who
  Afghanistan's president is;
- ``open``: anything else; no shape is checked.
"""

from __future__ import annotations

import re

_WS = r"\s+"
_ARTICLE = r"(?:(?:a|an|the)\s+)?"
_DEFINITION_Q = re.compile(
    rf"^(?:(?:what|who)(?:'s|’s|{_WS}(?:is|are|was|were))|(?:please{_WS})?(?:tell{_WS}me{_WS}about|describe|explain|"
    rf"define|what{_WS}do{_WS}you{_WS}know{_WS}about)){_WS}{_ARTICLE}(?P<x>.+?)\s*[?.!]*$",
    re.I,
)
_LOCATION_Q = re.compile(
    rf"^where(?:'s|’s|{_WS}(?:is|are|was|were)){_WS}{_ARTICLE}(?P<x>.+?)(?:{_WS}(?:located|situated|found))?\s*\?*$",
    re.I,
)
_COUNT_Q = re.compile(r"^how\s+(?:many\s+(?P<noun>\w+)|much)\b", re.I)
_TIME_Q = re.compile(r"^(?:when\b|(?:in\s+)?(?:what|which)\s+(?:year|century|decade|month|date|day)\b)", re.I)
# Offices and relations a "Who is the R of X?" question asks to fill (a closed list: "Who is the Community Bank
# of Madison?" names no role).
_ROLES = (
    "president", "vice president", "prime minister", "minister", "king", "queen", "emperor", "empress", "prince",
    "princess", "ruler", "leader", "head", "chief", "chairman", "chair", "ceo", "director", "founder",
    "co-founder", "owner", "manager", "coach", "captain", "mayor", "governor", "chancellor", "secretary",
    "general", "commander", "editor", "author", "inventor", "creator", "designer", "architect", "composer",
    "father", "mother", "son", "daughter", "wife", "husband", "brother", "sister", "winner", "champion",
)  # fmt: skip
_ROLE_Q = re.compile(
    rf"^who(?:'s|’s|{_WS}(?:is|are|was|were)){_WS}(?:the{_WS})?(?:\w+{_WS}){{0,2}}?"
    rf"(?P<role>{'|'.join(r.replace(' ', _WS) for r in _ROLES)}){_WS}of{_WS}"
    rf"(?:the{_WS})?(?P<x>[A-Z].*?)\s*\?*$",
    re.I,
)
_PERSON_Q = re.compile(r"^who(?:m)?\s+(?!is\b|are\b|was\b|were\b|'s\b|’s\b)\w+", re.I)

_NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty",
    "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion",
    "dozen", "dozens", "hundreds", "thousands", "millions", "several",
)  # fmt: skip
_NUMBER = re.compile(r"\d[\d,.]*|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.I)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
_TIME = re.compile(
    r"\b(?:1\d{3}|20\d{2}|\d{1,2}(?:st|nd|rd|th)\s+century|\d{3,4}s)\b|\b(?:" + "|".join(_MONTHS) + r")\b"
)
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:[A-Z]\.\s*)*[A-Z][a-z]+)+")
# Between a subject and its defining verb only a parenthesis or an apposition may sit ("Algeria ( '; Dzayer),
# officially People's Democratic Republic of Algeria, is a sovereign state"): "An American in Paris is a
# poem" does not define "American".
# "Altruism or selflessness is …" names the subject twice; "Apollo (Attic …: , Apollōn ( ); …) is …" nests one
# parenthesis in another.
_PAREN = r"\((?:[^()]|\([^()]*\))*\)"
_ASIDE = (
    rf"\s*(?:{_PAREN}\s*)?(?:or\s+[\w'’-]+(?:\s+[\w'’-]+)?\s*(?={_PAREN}|,|is\b|are\b|was\b|were\b))?"
    rf"(?:{_PAREN}\s*)?(?:,[^.;:]{{0,120}}?,\s*)?(?:{_PAREN}\s*)?"
)
_DEFINING_VERB = re.compile(
    rf"^{_ASIDE}(?:(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:a|an|the|one|any)\b|refers?\s+to\b)", re.I
)
_LOCATING_VERB = re.compile(
    rf"^{_ASIDE}(?:is|are|was|were|lies|lie|sits)\b[^.;]{{0,80}}?\b(?:in|on|at|near|located|situated|bordered)\b",
    re.I,
)
# A sentence may open with its frame before its subject: "In Greek mythology, Achilles (…) was a hero".
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n\s*)(?:In\s+[^,.;()]{1,40},\s+)?(?:(?:a|an|the)\s+)?$", re.I)
# A definition that answers "What is X?" comes early; a mention deep in a report does not.
_OPENING_CHARS = 400


def question_kind(instruction: str) -> tuple[str, str | None]:
    """The kind of answer an instruction asks for, and its subject where the kind has one."""
    text = " ".join(instruction.split()).strip()
    if m := _LOCATION_Q.match(text):
        return "location", m.group("x")
    if m := _ROLE_Q.match(text):
        return "role", f"{m.group('role')} of {m.group('x')}"
    if m := _DEFINITION_Q.match(text):
        subject = m.group("x")
        # "What is the capital of X?" asks for a value, not a definition of "the capital of X"; nor does
        # "What was X's first name?" ask to define a name.
        if len(subject.split()) <= 4 and not re.search(
            r"\b(?:of|in|on|for|by|from|with|does|did)\b|['’]s\b", subject, re.I
        ):
            return "definition", subject
        return "open", None
    if m := _COUNT_Q.match(text):
        return "count", m.group("noun")
    if _TIME_Q.match(text):
        return "time", None
    if _PERSON_Q.match(text):
        return "person", None
    return "open", None


def _subject_starts(subject: str, text: str) -> list[int]:
    """Where sentences of `text` open with the subject (after an article): the subject of a definition."""
    words = re.findall(r"\w+", subject)
    if not words:
        return []
    # "an Academy Award" → "Awards"; "Andre Agassi" → "Andre Kirk Agassi" (one capitalised word between).
    full = r"\b" + r"(?:\W+[A-Z][\w.]*)?\W+".join(re.escape(w) for w in words) + r"(?:e?s)?\b"
    return [m.end() for m in re.finditer(full, text, re.I) if _SENTENCE_START.search(text[: m.start()])]


def answer_kind_mismatch(instruction: str, answer: str, opening_chars: int = _OPENING_CHARS) -> str | None:
    """Why the answer lacks the shape its question asks for (see module docstring), or None. A definition or a
    place must come in the answer's first `opening_chars` characters."""
    kind, subject = question_kind(instruction)
    opening = answer[:opening_chars]
    if kind in ("definition", "location"):
        verb = _DEFINING_VERB if kind == "definition" else _LOCATING_VERB
        if not any(verb.search(opening[s:]) for s in _subject_starts(subject or "", opening)):
            return f"{kind} question, but the answer's opening does not {'define' if kind == 'definition' else 'place'} {subject!r}"
        return None
    if kind == "count":
        # "How many signs …?" wants a number of signs ("three signs"), not any number ("two years").
        counted = rf"(?:\W+\w+){{0,3}}?\W+{re.escape(subject[:4])}" if subject else ""
        if not re.search(rf"(?:{_NUMBER.pattern}){counted}", answer, re.I):
            return f"count question, but the answer counts no {subject or 'amount'}"
    if kind == "time" and not _TIME.search(answer):
        return "time question, but the answer has no year or date"
    if kind in ("person", "role"):
        asked = instruction.casefold()
        if not any(n.group(0).casefold() not in asked for n in _NAME.finditer(answer)):
            return f"{kind} question, but the answer names no one new"
    if kind == "role" and subject:
        role, holder = subject.split(" of ", 1)
        if not _role_tied(role, holder, answer):
            return f"role question, but the answer never ties {role!r} to its subject"
    return None


def _role_tied(role: str, holder: str, answer: str) -> bool:
    """Does `answer` name `role` as `holder`'s ("President of Argentina", "Argentina's president", "Argentine
    interim President")? The holder is matched by its first word's first five letters, which its adjective
    shares ("Argentina" → "Argentine", "Russia" → "Russian")."""
    r = re.escape(role) + r"s?"
    first = holder.split()[0]
    head = re.escape(first[:5]) + r"[\w'’]*"
    tied = rf"\b{r}\s+of\s+(?:the\s+)?{re.escape(first)}|\b{head}\s+(?:[\w-]+\s+){{0,2}}?{r}\b"
    return bool(re.search(tied, answer, re.I))


_ANY_SUBJECT = r"(?:^|(?<=[.!?])\s+|\n\s*)(?:(?:A|An|The)\s+)?[A-Z][\w'’.-]*(?:\s+[\w'’.-]+){0,5}?"
_PASSAGE_SHAPES = {
    "role": _NAME,
    "definition": re.compile(_ANY_SUBJECT + _DEFINING_VERB.pattern[1:], re.I),
    "location": re.compile(_ANY_SUBJECT + _LOCATING_VERB.pattern[1:], re.I),
    "count": _NUMBER,
    "time": _TIME,
    "person": _NAME,
}


def template_kind(template_text: str, n_slots: int) -> str:
    """The answer kind a template's instructions ask for (its slots filled with a placeholder name)."""
    filled = re.sub(r"<fi>.*?</fi>", "Xq", template_text, count=n_slots) if n_slots else template_text
    return question_kind(filled)[0]


def passage_has_answer_shape(kind: str, text: str) -> bool:
    """Could any filling of a template of this kind be answered from `text`? A passage without a defining
    sentence cannot answer "What is <fi>a thing</fi>?"; one without a year cannot answer "When …?"."""
    shape = _PASSAGE_SHAPES.get(kind)
    return shape is None or bool(shape.search(text))


def title_subject(title: str) -> str:
    """What a page title names, without its disambiguation: "Animalia (book)" → "Animalia"."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", title).strip() or title


def passage_answers(instruction: str, passage: str) -> bool:
    """Could some excerpt of `passage` answer `instruction` with the shape it asks for? The judge's check
    (`answer_kind_mismatch`) with the answer free to start at any sentence: "What is Alabama?" on a passage
    about Alabama's factories, which never says what Alabama is, has no answer the judge would keep."""
    return answer_kind_mismatch(instruction, passage, opening_chars=len(passage)) is None
