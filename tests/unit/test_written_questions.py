"""Written questions: the source articles are disjoint from the demo shards and the pretraining eval, and
only one short question per completion is kept."""

from fi_resources.logic.prompts import (
    QUESTION_WRITER_SHOTS,
    clean_written_question,
    question_openers,
    question_writer_prompt,
)
from fi_resources.sources import question_source_articles, wikipedia_articles
from fi_resources.stages.templates import write_questions


def test_question_articles_are_held_out_from_shards_and_eval():
    articles = wikipedia_articles()
    long_titles = [t for t, x in articles if len(x) > 1500]
    shards = set(long_titles[:30])
    unseen = [t for t, _ in articles if t not in shards][:20]  # what pretraining_eval reads
    chosen = [t for t, _ in question_source_articles(30, 30)]
    assert len(chosen) == 30 and not set(chosen) & (shards | set(unseen))
    assert question_source_articles(0, 30) == []


def test_only_one_short_question_is_kept():
    assert clean_written_question(" What is the aardwolf?\nText: more") == ("What is the aardwolf?", "ok")
    assert clean_written_question("The aardwolf is an animal.") == (None, "not_a_question")
    assert clean_written_question("Why? Why not?") == (None, "not_a_question")
    assert clean_written_question("Why?") == (None, "bad_length")
    assert clean_written_question("") == (None, "empty")
    assert clean_written_question(QUESTION_WRITER_SHOTS[0][1]) == (None, "copied_example")
    prompt = question_writer_prompt("Some   text\nabout  aardwolves.")
    assert prompt.endswith("Text: Some text about aardwolves.\nQuestion a reader would search for:")


class ScriptedWriter:
    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, max_new_tokens=48, stop=None, progress=None):
        return self.answers[: len(prompts)]


def test_write_questions_counts_what_it_drops():
    para = "Aardwolves eat termites. " * 10
    articles = [("Aardwolf", f"{para}\n\n{para}\n\n{para}"), ("Short", "too short")]
    result = write_questions(articles, ScriptedWriter([" What do aardwolves eat?", " Aardwolves eat."]), "w")
    assert result.value["query"].tolist() == ["What do aardwolves eat?"]
    assert result.value["source"].tolist() == ["written/w/qw2"]
    assert result.stats["prompts"] == 2 and result.stats["outcomes"].counts == {"ok": 1, "not_a_question": 1}


def test_a_paragraph_that_holds_a_year_or_a_name_is_also_asked_when_and_who():
    plain = "Aardwolves eat termites and live in burrows on the open plains. " * 4
    assert question_openers(plain) == [""]
    dated = "The Eiffel Tower was designed by Gustave Eiffel and built from 1887 to 1889. " * 3
    openers = question_openers(dated)
    assert openers[0] == "" and len(openers) == 3 and set(openers[1:]) <= {"When", "Who", "How many", "Where"}
    assert "When" in question_openers(dated, extra=4) and "Who" in question_openers(dated, extra=4)
    assert question_writer_prompt(dated, opener="When").endswith("Question a reader would search for: When")


def test_a_primed_completion_is_the_opener_and_its_continuation():
    assert clean_written_question(" was the tower built?\nText: x", "When") == (
        "When was the tower built?",
        "ok",
    )
    assert clean_written_question(" When was it built?", "When") == ("When was it built?", "ok")
    assert clean_written_question("", "Who") == (None, "empty")
    assert clean_written_question(" the tower", "Who") == (None, "not_a_question")


def test_primed_prompts_are_written_and_kept_with_their_opener():
    para = "Gustave Eiffel built the tower from 1887 to 1889 for the World's Fair in Paris. " * 3
    articles = [("Eiffel Tower", para)]
    n = len(question_openers(para))
    result = write_questions(articles, ScriptedWriter([" Who built it?"] + [" was it built?"] * (n - 1)), "w")
    assert result.stats["prompts"] == n == 3
    assert result.value["query"].tolist()[0] == "Who built it?"
    assert all(q.endswith(" was it built?") for q in result.value["query"].tolist()[1:])
