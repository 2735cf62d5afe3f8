"""Matching drops index hits whose template asks for something the passage never mentions."""

import numpy as np
import pandas as pd

from fi_resources.settings import MatchingSettings
from fi_resources.stages.retrieval import match_documents

BANK = pd.DataFrame(
    {
        "template_id": ["currency", "capital", "define"],
        "query_id": ["q1", "q2", "q3"],
        "template": [
            "What currency is used in <fi>a country</fi>?",
            "What is the capital city of <fi>a country</fi>?",
            "What is <fi>a country</fi>?",
        ],
        "n_slots": [1, 1, 1],
    }
)
DOCS = pd.DataFrame(
    {
        "doc_id": ["algeria"],
        "title": ["Algeria"],
        "text": ["Algeria is a country in North Africa. Its capital city is Algiers, on the coast."],
    }
)


class OneVectorEncoder:
    num_local = 0

    def encode(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32)


class FixedIndex:
    def search(self, queries, k):
        return [[("currency", 0.9), ("capital", 0.8), ("define", 0.7)] for _ in range(len(queries))]


def chosen_over_seeds(
    docs, bank, index, stat: str, seeds: int = 20, typer=None, **settings
) -> tuple[set[tuple[str, str]], int]:
    """(doc_id, template_id) pairs matched over `seeds` runs (one embedding picks one template per run), and
    the sum of the `stat` hits dropped."""
    chosen, dropped = set(), 0
    for seed in range(seeds):
        run_settings = MatchingSettings(seed=seed, **settings)
        result = match_documents(
            docs, bank, OneVectorEncoder(), index, (0.1, "fixed"), "s", run_settings, typer
        )
        chosen |= set(zip(result.value["doc_id"], result.value["template_id"], strict=True))
        dropped += result.stats[stat]
    return chosen, dropped


def matched(min_asked_coverage: float) -> tuple[set[str], int]:
    chosen, dropped = chosen_over_seeds(
        DOCS, BANK, FixedIndex(), "hits_dropped_unanswerable", min_asked_coverage=min_asked_coverage
    )
    return {template for _, template in chosen}, dropped


def test_a_template_asking_what_the_passage_never_mentions_is_not_matched():
    assert matched(0.5) == ({"capital", "define"}, 20)
    assert matched(0.0) == ({"currency", "capital", "define"}, 0)


def test_a_template_whose_kind_of_answer_the_passage_lacks_is_not_matched():
    bank = pd.DataFrame(
        {
            "template_id": ["define", "when"],
            "query_id": ["q1", "q2"],
            "template": ["What is <fi>a country</fi>?", "When was <fi>a country</fi> founded?"],
            "n_slots": [1, 1],
        }
    )
    docs = pd.DataFrame(
        {
            "doc_id": ["dated", "undated"],
            "title": ["Algeria", "Algeria"],
            "text": [
                "Algeria is a country in North Africa. It was founded in 1962, on the coast.",
                "Algeria is a country in North Africa. It was founded after a long war, on the coast.",
            ],
        }
    )

    class Index:
        def search(self, queries, k):
            return [[("when", 0.9), ("define", 0.8)] for _ in range(len(queries))]

    def run(require: bool) -> tuple[set[tuple[str, str]], int]:
        return chosen_over_seeds(
            docs,
            bank,
            Index(),
            "hits_dropped_no_answer_shape",
            min_asked_coverage=0.0,
            require_answer_shape=require,
        )

    both = {("dated", "when"), ("dated", "define"), ("undated", "when"), ("undated", "define")}
    assert run(False) == (both, 0)
    assert run(True) == (both - {("undated", "when")}, 20)


def test_a_template_the_passage_cannot_answer_about_its_title_is_not_matched():
    """The instantiator fills slots with the title: "What is Alabama?" needs a passage that says what it is."""
    bank = pd.DataFrame(
        {
            "template_id": ["define", "where"],
            "query_id": ["q1", "q2"],
            "template": ["What is <fi>a state</fi>?", "Where is <fi>a state</fi> located?"],
            "n_slots": [1, 1],
        }
    )
    docs = pd.DataFrame(
        {
            "doc_id": ["lead", "later", "untitled"],
            # An untitled row's placeholder title ("<shard> #<row>") names no subject to ask about.
            "title": ["Alabama", "Alabama", "s #2"],
            "text": [
                "Alabama is a state in the southeastern region of the United States.",
                # A defining sentence, about something else: the passage shape check alone lets it through.
                "Mobile is a port city. An Airbus plant was announced in Alabama in 2012.",
                "Mobile is a port city. An Airbus plant was announced in Alabama in 2012.",
            ],
        }
    )

    class Index:
        def search(self, queries, k):
            return [[("define", 0.9), ("where", 0.8)] for _ in range(len(queries))]

    chosen, dropped = chosen_over_seeds(
        docs, bank, Index(), "hits_dropped_title_unanswered", min_asked_coverage=0.0
    )
    assert chosen == {("lead", "define"), ("lead", "where"), ("untitled", "define"), ("untitled", "where")}
    assert dropped == 20 * 2  # both of the later passage's hits, every seed


class FixedTyper:
    """Types every value as a nation, then a country, then a plant; records what it was asked."""

    def __init__(self):
        self.asked: list[tuple[list[str], list[str]]] = []

    def scores(self, values, extra_nouns=()):
        from fi_resources.logic.slot_types import TYPE_NOUNS

        self.asked.append((list(values), list(extra_nouns)))
        nouns = set(TYPE_NOUNS) | set(extra_nouns)
        return {v: {n: 0.0 for n in nouns} | {"nation": 5.0, "country": 4.0, "plant": 3.0} for v in values}


def test_a_template_whose_slots_the_passage_subject_cannot_fill_is_not_matched():
    bank = pd.DataFrame(
        {
            "template_id": ["fruit", "capital", "define", "thing"],
            "query_id": ["q1", "q2", "q3", "q4"],
            "template": [
                "What is the common name for <fi>a fruit</fi>?",
                "What is the capital city of <fi>a country</fi>?",
                "What is <fi>a fruit</fi>?",  # a definition: the slot's type does not change what it asks
                "Why is <fi>a thing</fi> important?",  # every subject is "a thing"
            ],
            "n_slots": [1, 1, 1, 1],
        }
    )

    class Index:
        def search(self, queries, k):
            return [[("fruit", 0.9), ("capital", 0.8), ("define", 0.7), ("thing", 0.6)] for _ in queries]

    def run(typer) -> tuple[set[str], int]:
        chosen, dropped = chosen_over_seeds(
            DOCS,
            bank,
            Index(),
            "hits_dropped_subject_type",
            30,
            typer,
            min_asked_coverage=0.0,
            require_answer_shape=False,
        )
        return {template for _, template in chosen}, dropped

    typer = FixedTyper()
    assert run(typer) == ({"capital", "define", "thing"}, 30)
    assert typer.asked[0] == (["Algeria"], ["country", "fruit", "thing"])  # each slot head is scored
    assert run(None) == ({"fruit", "capital", "define", "thing"}, 0)

    # An untitled row has no subject to type: the typer is not asked, and no hit is dropped for it.
    untitled = DOCS.assign(title="s #0")
    typer = FixedTyper()
    settings = MatchingSettings(min_asked_coverage=0.0, require_answer_shape=False)
    result = match_documents(
        untitled, bank, OneVectorEncoder(), Index(), (0.1, "fixed"), "s", settings, typer
    )
    assert (typer.asked, result.stats["hits_dropped_subject_type"]) == ([], 0)


def test_subject_fits_rule():
    from fi_resources.logic.slot_types import TYPE_NOUNS, subject_fits

    scores = {t: 0.0 for t in TYPE_NOUNS} | {"nation": 5.0, "country": 4.0, "plant": 3.0}
    assert subject_fits(["a country"], "open", scores)
    assert not subject_fits(["a fruit"], "open", scores)
    assert subject_fits(["a fruit", "a country"], "open", scores)  # the subject fills one of the slots
    assert subject_fits(["a fruit"], "definition", scores) and subject_fits([], "open", scores)
    assert not subject_fits(["a plant"], "open", scores, top_k=2) and subject_fits(
        ["a plant"], "open", scores
    )
