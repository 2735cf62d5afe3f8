"""Instruction templates with ``<fi>description</fi>`` slots: parsing, validation and filling."""

from __future__ import annotations

import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

from fi_resources.logic.answer_kind import template_kind

OPEN_TAG = "<fi>"
CLOSE_TAG = "</fi>"

# Anything that looks like an HTML/XML-ish tag (or the excerpt ellipsis ``<...>``). Requiring a letter,
# slash or dot right after ``<`` keeps comparisons such as ``x < 3 and y > 2`` legal.
_TAG_RE = re.compile(r"<\s*/?\s*[A-Za-z.][^<>]*>")
_SLOT_RE = re.compile(r"<fi>(.*?)</fi>", re.DOTALL)
# Quoted phrases in a query: "straight" and “curly” double quotes.
_QUOTED_RE = re.compile(r"\"([^\"]+)\"|“([^”]+)”")


class TemplateError(ValueError):
    """A template that fails the grammar or the genericity checks; ``reason`` is a snake_case code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Template:
    """A parsed template: the stripped text (with tags) and its slot descriptions in order."""

    text: str
    slots: tuple[str, ...]

    @property
    def n_slots(self) -> int:
        return len(self.slots)


def parse_template(text: str, max_chars: int = 600, max_slot_chars: int = 60) -> Template:
    """Parse ``text`` under the strict ``<fi>``/``</fi>`` grammar or raise :class:`TemplateError`."""
    text = text.strip()
    if not text:
        raise TemplateError("empty")
    if len(text) > max_chars:
        raise TemplateError("too_long", f"{len(text)} > {max_chars} chars")

    slots: list[str] = []
    open_at: int | None = None
    for match in _TAG_RE.finditer(text):
        tag = match.group(0)
        if tag == OPEN_TAG:
            if open_at is not None:
                raise TemplateError("nested_tags", f"at char {match.start()}")
            open_at = match.end()
        elif tag == CLOSE_TAG:
            if open_at is None:
                raise TemplateError("unbalanced_tags", f"stray {CLOSE_TAG} at char {match.start()}")
            slots.append(text[open_at : match.start()])
            open_at = None
        else:
            raise TemplateError("bad_markup", repr(tag))
    if open_at is not None:
        raise TemplateError("unbalanced_tags", f"unclosed {OPEN_TAG}")
    if not slots:
        raise TemplateError("no_slots")

    stripped = tuple(slot.strip() for slot in slots)
    for slot in stripped:
        if not slot:
            raise TemplateError("empty_slot")
        if len(slot) > max_slot_chars:
            raise TemplateError("slot_too_long", f"{slot[:30]!r}... > {max_slot_chars} chars")
    # Normalise the slot text inside the tags so ``text`` and ``slots`` agree.
    normalised = _SLOT_RE.sub(lambda m: f"{OPEN_TAG}{m.group(1).strip()}{CLOSE_TAG}", text)
    return Template(text=normalised, slots=stripped)


def _as_template(template: Template | str) -> Template:
    return template if isinstance(template, Template) else parse_template(template)


def _fold(text: str) -> str:
    """Case- and whitespace-insensitive form used for comparisons."""
    return " ".join(text.split()).casefold()


def template_literal(template: Template | str) -> str:
    """The template with each slot replaced by its description (no tags)."""
    return _SLOT_RE.sub(lambda m: m.group(1).strip(), _as_template(template).text)


def template_skeleton(template: str) -> str:
    """The template without its slot types ("What is <fi>a nation</fi>?" and "What is a <fi>a device</fi>?" →
    "what is _?"): two templates with one skeleton give a passage the same instruction twice."""
    text = _SLOT_RE.sub(" _ ", template)
    return _fold(re.sub(r"\b(?:a|an|the)\s+_", "_", text, flags=re.I)).replace(" _ ?", " _?")


_ARTICLES = {"a", "an", "the", "some", "any"}


def check_generic(template: Template, original_query: str | None) -> None:
    """Raise ``TemplateError("vague_slot")`` for a slot that is only an article, and
    ``TemplateError("not_generic")`` when ``template`` did not genericize ``original_query``.

    Rules (all case- and whitespace-insensitive; nothing is checked when the query is unknown):
    (a) a slot description longer than 3 words appears verbatim in the query, i.e. the slot copied the
        specific entity instead of describing it;
    (b) the template with slots replaced by their descriptions equals the query (nothing replaced);
    (c) the template with descriptions filled in is longer than 1.5 × the query + 20 characters;
    (d) the literal text outside the slots still contains a double-quoted ("..." or “...”) phrase of the
        query: quoted phrases are almost always the specific entity that should have become a slot.
    """
    for slot in template.slots:
        if not [w for w in slot.split() if w.casefold() not in _ARTICLES]:
            raise TemplateError("vague_slot", f"slot describes nothing: {slot!r}")
    if original_query is None:
        return
    query = _fold(original_query)
    # A template that is far longer than its query rambled on (e.g. copied the description into it).
    if len(template_literal(template)) > 1.5 * len(original_query) + 20:
        raise TemplateError("not_generic", "template much longer than the query")
    for slot in template.slots:
        if len(slot.split()) > 3 and _fold(slot) in query:
            raise TemplateError("not_generic", f"slot copies the query: {slot!r}")
    if _fold(template_literal(template)) == query:
        raise TemplateError("not_generic", "template equals the query")
    outside = [_fold(part) for part in _SLOT_RE.split(template.text)[::2]]
    for match in _QUOTED_RE.finditer(original_query):
        phrase = _fold(match.group(1) or match.group(2))
        if phrase and any(phrase in part for part in outside):
            raise TemplateError("not_generic", f"quoted phrase kept: {phrase!r}")


def _plain_words(text: str) -> list[str]:
    # A possessive is a word of its own: a slot stands for "Jordan" in "Jordan’s capital".
    text = re.sub(r"['’]s\b", " s", text.casefold())
    return re.findall(r"[^\W_]+", re.sub(r"['’]", "", text))


def follows_query(template: Template | str, query: str) -> bool:
    """Whether `query` is `template` with each slot replaced by one or more words, comparing words only
    (case and punctuation aside; a possessive "’s" is a word of its own). A small genericizer that rewrites
    the rest of the question writes nonsense ("How many hearts does an octopus have?" → "How many <fi>an
    octopus</fi> has?"); a large one may rephrase well ("When did <fi>an event</fi> happen?")."""
    literals = _SLOT_RE.split(_as_template(template).text)[::2]
    slot = r"(?:\S+ )+?"  # a slot stands for at least one whole word
    pattern = slot.join("".join(re.escape(w) + " " for w in _plain_words(lit)) for lit in literals)
    return re.fullmatch(pattern, "".join(w + " " for w in _plain_words(query))) is not None


# An article before a slot whose description has its own ("What is a <fi>a computer</fi>?"), and what follows.
_DOUBLED_ARTICLE = re.compile(r"\b(?:a|an|the)\s+(<fi>(?:a|an|the)\s[^<]*</fi>)(?=\s*([^\s<]*))", re.I)


# Past participles without "-ed" that follow a subject slot ("Where was <fi>a painting</fi> found?").
_PARTICIPLES = {"born", "built", "written", "found", "made", "held", "seen", "known", "given", "taken", "done"}  # fmt: skip


def drop_doubled_articles(template: Template) -> Template:
    """The template without an article doubled before a slot ("What is a <fi>a computer</fi>?" → "What is
    <fi>a computer</fi>?") where the slot ends a phrase: punctuation, a function word or a participle follows.
    Before a content word ("the <fi>a team</fi> team") the slot stands for a modifier; that stays for
    `question_form_reason` to reject."""

    def fix(m: re.Match[str]) -> str:
        after = m.group(2)
        word = re.match(r"[a-z]+", after, re.I)
        w = word.group().casefold() if word else ""
        ends_phrase = (
            not after or after[0] in "?.!,;:" or w in _FUNCTION_WORDS | _PARTICIPLES or w.endswith("ed")
        )
        return m.group(1) if ends_phrase else m.group(0)

    text = _DOUBLED_ARTICLE.sub(fix, template.text)
    return template if text == template.text else Template(text=text, slots=template.slots)


def validate_template(text: str, original_query: str | None = None) -> tuple[Template | None, str | None]:
    """Return ``(template, None)`` when valid (doubled articles dropped), else ``(None, reason)``."""
    try:
        template = drop_doubled_articles(parse_template(text))
        check_generic(template, original_query)
    except TemplateError as err:
        return None, err.reason
    return template, None


def fill_template(template: Template | str, values: Sequence[str]) -> str:
    """Replace the slots, in order, with ``values``; ``ValueError`` if the counts differ."""
    parsed = _as_template(template)
    if isinstance(values, str) or len(values) != parsed.n_slots:
        n = 1 if isinstance(values, str) else len(values)
        raise ValueError(f"template has {parsed.n_slots} slots, got {n} values")
    it = iter(values)
    return _SLOT_RE.sub(lambda _m: next(it), parsed.text)


# How a question or request a user types starts ("In which city ...", "Tell me ...", "Can you ...").
QUESTION_OPENINGS = {
    "what", "what's", "what’s", "which", "who", "who's", "whom", "whose", "where", "when", "why", "how",
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would", "should", "has", "have",
    "tell", "name", "list", "explain", "describe", "give", "write", "show", "compare", "define", "summarize",
    "in", "on", "at", "from", "for", "of", "by", "during", "according", "i", "please",
}  # fmt: skip
_TYPE_PHRASE = re.compile(r"(?:an?|the)\s+[a-z][a-z-]*(?:\s+[a-z][a-z-]*){0,3}")


def question_form_reason(template: Template | str) -> str | None:
    """Why a valid template is still not a question a user could ask once filled, or None.

    - ``not_a_question``: it opens with something other than a question word, an auxiliary or a request
      verb ("Port-au-Prince is the capital of <fi>a country</fi>?", "Good morning, <fi>a person</fi>?");
    - ``adjacent_slots``: two slots with nothing but spaces or punctuation between them;
    - ``untyped_slot``: a slot description that is not a lowercase type phrase ("a Winnie-the-Pooh",
      "ancient"): such a slot copied a name or a modifier, and no filler can be checked against it;
    - ``modifier_slot``: a slot between an article and a noun ("played for the <fi>a team</fi> team", "What is
      the <fi>a continent</fi> ocean?"): it stands for a modifier, and a name put there reads as nonsense;
    - ``slot_is_asked``: a slot right after "Which"/"What" stands where the answer belongs ("Which <fi>a
      city</fi> is known as <fi>a person</fi>?" lost the question's head noun);
    - ``asks_nothing``: besides its slots it asks nothing a judge could check the answer against, and it is
      not a definition or location question ("can you do <fi>a thing</fi> in <fi>a language</fi>?").
    """
    parsed = _as_template(template)
    head = _SLOT_RE.split(parsed.text)[0].strip().split()
    if not head or head[0].strip('¿¡"“').casefold() not in QUESTION_OPENINGS:
        return "not_a_question"
    literals = _SLOT_RE.split(parsed.text)[0::2]
    if any(not re.search(r"\w", lit) for lit in literals[1:-1]):
        return "adjacent_slots"
    if any(not _TYPE_PHRASE.fullmatch(slot) for slot in parsed.slots):
        return "untyped_slot"
    if _DOUBLED_ARTICLE.search(drop_doubled_articles(parsed).text):
        return "modifier_slot"
    if head[-1].casefold() in ("which", "what"):
        return "slot_is_asked"
    if not asked_words(parsed.text) and template_kind(parsed.text, parsed.n_slots) == "open":
        return "asks_nothing"
    return None


def recover_fillers(template: str, instruction: str) -> list[str] | None:
    """The values an instruction put into a template's slots, read back by matching the template's literal
    text around them (case-insensitive, whitespace-tolerant); None when the instruction does not follow the
    template. Lets a judge check a pair it is given without the instantiator's intermediate state."""
    parts = _SLOT_RE.split(template.strip())
    literals = parts[0::2]
    if len(literals) < 2:
        return [] if " ".join(template.split()).lower() == " ".join(instruction.split()).lower() else None

    def literal(text: str) -> str:
        return r"\s*".join(re.escape(w) for w in text.split()) if text.strip() else ""

    pattern = r"\s*(.+?)\s*".join(literal(lit) for lit in literals)
    m = re.fullmatch(r"\s*" + pattern + r"\s*", instruction, re.IGNORECASE | re.DOTALL)
    if not m or any(not g.strip() for g in m.groups()):
        return None  # an instruction that leaves a slot empty ("What year was President assassinated?")
    return [g.strip() for g in m.groups()]


# Words that say nothing about *what* a question asks (question words, auxiliaries, pronouns, fillers).
_FUNCTION_WORDS = {
    "what", "what's", "what’s", "which", "who", "whom", "whose", "where", "when", "why", "how", "is", "are",
    "was", "were", "be", "been", "do", "does", "did", "can", "could", "will", "would", "should", "has", "have",
    "had", "the", "a", "an", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "that",
    "this", "it", "its", "you", "your", "me", "my", "i", "tell", "about", "please", "there", "as", "into",
    "name", "most", "first", "known", "called", "type", "kind", "much", "many", "any", "some", "one",
    "year", "date", "time", "get", "make",
}  # fmt: skip
# Words, and numbers with their ordinal ending: a question that names "the 37th President" or "in 2016"
# asks for a passage that has that number.
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]+|\d(?:[\d,.]*\d)?(?:st|nd|rd|th)?")


@lru_cache(maxsize=1 << 16)  # a corpus repeats its words: each is stemmed once
def _stem(word: str) -> str:
    """A word without case, possessive or plural ending ("Countries" → "country"): a five-letter prefix
    matched "county" to "country" and "related" to "relativity"."""
    w = re.sub(r"['’]s?$", "", word.casefold())
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def asked_words(template: str) -> set[str]:
    """Stems of what a template asks besides its slots ("What currency is used in <fi>a country</fi>?" →
    {"currency", "used"}); empty for a pure "What is <fi>x</fi>?" question, which any definition answers."""
    literal = _SLOT_RE.sub(" ", template)
    return {_stem(w) for w in _WORD.findall(literal) if len(w) > 2 and w.casefold() not in _FUNCTION_WORDS}


def word_stems(text: str) -> set[str]:
    """The stems of a text's words, as `asked_words` makes them."""
    return {_stem(w) for w in _WORD.findall(text)}


def asked_coverage(words: set[str], text: str | AbstractSet[str]) -> float:
    """Share of `words` (stems) that occur in `text` (or in its `word_stems`, when one text is checked against
    many templates): does an answer speak to what is asked, not only to its topic? 1.0 when nothing is
    asked beyond the slots."""
    if not words:
        return 1.0
    seen = word_stems(text) if isinstance(text, str) else text
    return len(words & seen) / len(words)
