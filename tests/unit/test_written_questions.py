"""Written questions: the source articles are disjoint from the demo shards and the pretraining eval, and
only one short question per completion is kept."""

from fi_resources.logic.prompts import QUESTION_WRITER_SHOTS, clean_written_question, question_writer_prompt
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
    assert result.value["source"].tolist() == ["written/w/qw1"]
    assert result.stats["prompts"] == 2 and result.stats["outcomes"].counts == {"ok": 1, "not_a_question": 1}
