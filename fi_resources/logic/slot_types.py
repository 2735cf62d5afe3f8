"""Is a filled slot value the kind of thing its slot asks for? ("Who invented <fi>a computer</fi>?" filled with
"animation" is not.)

The audit set's tune split shows the judge's false keeps are slots filled with the wrong kind of thing
("What is the common name for <fi>a fruit</fi>?" → Autism). The 135M model types entities well with a
few-shot "X is a kind of" completion (offline-assets.md §8), so the check asks it: among a fixed vocabulary
of type nouns plus the slot's own head noun, is the slot's head one of the model's `top_k` most likely
types for the value, each type's likelihood taken relative to its prior ("It is a kind of …")? A fixed
vocabulary makes a pair's verdict independent of which other pairs are judged with it.

Only questions whose meaning depends on the slot's type are checked: "What is X?" and "Where is X?" ask
about X whatever the template's slot said (the bank's type words there are often wrong, and harmless).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# General entity types, written down once (not fitted): the vocabulary a slot's head noun is ranked in.
TYPE_NOUNS = (
    "person", "man", "woman", "writer", "musician", "singer", "actor", "player", "athlete", "politician",
    "president", "king", "scientist", "philosopher", "artist", "country", "nation", "state", "city", "town",
    "village", "region", "continent", "island", "river", "mountain", "lake", "ocean", "planet", "star",
    "animal", "bird", "fish", "plant", "tree", "fruit", "food", "drink", "disease", "disorder", "drug",
    "chemical", "element", "language", "religion", "company", "organization", "group", "band", "team",
    "party", "school", "university", "film", "movie", "book", "novel", "song", "album", "game", "sport",
    "show", "event", "war", "battle", "award", "holiday", "festival", "year", "date", "century", "number",
    "building", "monument", "vehicle", "car", "ship", "aircraft", "machine", "device", "computer",
    "software", "program", "website", "theory", "science", "field", "concept", "idea", "art", "style",
    "technique", "law", "document", "currency", "unit", "material", "job", "profession",
)  # fmt: skip

# Question kinds (`answer_kind.question_kind`) whose meaning does not depend on the slot's type.
UNTYPED_KINDS = frozenset({"definition", "location"})
# Heads that every value satisfies: "How does <fi>a thing</fi> work?" asks nothing of its filler's type.
GENERIC_HEADS = frozenset({"thing", "something", "entity", "item", "object", "topic", "subject", "term"})
TOP_K = 3  # chosen on the audit set's tune split (bench/slot_type_report.py), among 1, 2, 3, 4, 6
_ARTICLE = re.compile(r"^(?:a|an|the|some|any)\s+", re.I)
_TAIL = re.compile(r"\s+(?:of|in|on|for|from|with|that|which|who|about|to)\s+.*$", re.I)
_WORD = re.compile(r"[a-z][a-z-]*")


def slot_head(description: str) -> str | None:
    """The head noun of a slot description: "a small unit of memory" → "unit", "a U.S. state" → "state";
    None when there is no word."""
    text = _TAIL.sub("", _ARTICLE.sub("", " ".join(description.split()).lower()))
    words = _WORD.findall(text)
    return words[-1] if words else None


def type_vocabulary(head: str) -> tuple[str, ...]:
    """The nouns a slot's head is ranked among: the fixed vocabulary, with the head added when missing."""
    return TYPE_NOUNS if head in TYPE_NOUNS else (*TYPE_NOUNS, head)


def head_rank(scores: dict[str, float], head: str) -> int:
    """How many types of the head's vocabulary score strictly above it (0 = the model's first choice)."""
    own = scores[head]
    return sum(1 for t in type_vocabulary(head) if t != head and scores[t] > own)


def type_mismatch(filler: str, description: str, scores: dict[str, float], top_k: int = TOP_K) -> str | None:
    """Why `filler` is not what `description` asks for, from the types' relative log-likelihoods, or None."""
    head = slot_head(description)
    if head is None or head in GENERIC_HEADS:
        return None
    if not filler.strip():
        return f"slot {description!r} is empty"
    rank = head_rank(scores, head)
    if rank < top_k:
        return None
    best = max(type_vocabulary(head), key=lambda t: scores[t])
    return f"{filler!r} is not {description!r} (typed as {best!r}; {head!r} ranks {rank + 1})"


# "Who is X?" asks for a person or a group of people whatever its slot says ("Who was Anarchism?" is not a
# question): one of these must be among the value's `top_k` types.
PEOPLE_TYPES = frozenset({
    "person", "man", "woman", "writer", "musician", "singer", "actor", "player", "athlete", "politician",
    "president", "king", "scientist", "philosopher", "artist", "group", "band", "team", "nation", "party",
})  # fmt: skip
_WHO = re.compile(r"^\s*who(?:m)?\b", re.I)


def asks_who(text: str) -> bool:
    """Does a question (or a template) ask "Who …?"."""
    return bool(_WHO.match(text))


# "Who is X?" asks more of X's types than a typed slot does: the people type must be among its 2 most likely
# ("Altruism" ranks concept, theory, politician). Chosen on the audit set's tune split (README).
PEOPLE_TOP_K = 2


def people_mismatch(value: str, scores: Mapping[str, float], top_k: int = PEOPLE_TOP_K) -> str | None:
    """Why `value` cannot be the subject of a "Who is …?" question (none of its `top_k` types is a kind of
    people), or None."""
    ranked = sorted(TYPE_NOUNS, key=lambda t: -scores.get(t, float("-inf")))[:top_k]
    if not scores or PEOPLE_TYPES & set(ranked):
        return None
    return f"{value!r} is not a person or a group ('who' asks for one; typed as {ranked[0]!r})"


def subject_fits(
    slots: Sequence[str], kind: str, scores: Mapping[str, float], top_k: int = TOP_K, who: bool = False
) -> bool:
    """Could a passage's subject (typed by `scores`, as `type_mismatch` types a filled value) fill one of a
    template's slots? Untyped kinds, slots without a head and generic heads take anything; a template with
    no slot asks nothing of it. A "Who …?" definition (`who`) takes only people."""
    if who and kind == "definition" and slots:
        return people_mismatch("subject", scores) is None
    if kind in UNTYPED_KINDS or not slots:
        return True
    for description in slots:
        head = slot_head(description)
        if head is None or head in GENERIC_HEADS or head_rank(scores, head) < top_k:
            return True
    return False
