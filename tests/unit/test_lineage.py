import pytest

from fi_resources.logic.lineage import (
    UnknownPair,
    build_story,
    check_excerpts,
    render_text,
    resolve_pair_id,
)

SOURCE = "Intro paragraph here.\n\nThe Nile is a river in Africa. It flows north."
OFFSET = SOURCE.index("The Nile")
PASSAGE = SOURCE[OFFSET:]


def test_an_id_or_its_unique_prefix_resolves():
    known = ["doc-000:aa", "doc-001:bb", "other:cc"]
    assert resolve_pair_id("doc-001:bb", known) == "doc-001:bb"
    assert resolve_pair_id("oth", known) == "other:cc"
    with pytest.raises(UnknownPair, match="prefix of 2 pair ids"):
        resolve_pair_id("doc-", known)
    with pytest.raises(UnknownPair, match="--list"):
        resolve_pair_id("zzz", known)
    with pytest.raises(UnknownPair, match="no pairs yet"):
        resolve_pair_id("zzz", [])


def test_spans_are_read_from_the_passage_at_source_coordinates():
    start = SOURCE.index("a river")
    end = start + len("a river in Africa")
    (ok,) = check_excerpts(
        [[start, end]], [[start - OFFSET, end - OFFSET]], PASSAGE, OFFSET, "It is a river in Africa."
    )
    assert ok.text == "a river in Africa" and ok.problems == ()
    assert (ok.passage_start, ok.passage_end) == (start - OFFSET, end - OFFSET)
    # Read without the offset (a passage-local span taken for a source one): other text, flagged.
    (shifted,) = check_excerpts(
        [[start - OFFSET, end - OFFSET]], None, PASSAGE, OFFSET, "It is a river in Africa."
    )
    assert shifted.problems and shifted.text != "a river in Africa"
    (outside,) = check_excerpts([[0, 5]], None, PASSAGE, OFFSET, "Intro")
    assert outside.text is None and "outside the passage" in outside.problems[0]
    (unchecked,) = check_excerpts([[start, end]], [[1, 2], [3, 4]], None, None, None)
    assert unchecked.text is None and unchecked.problems == ("1 excerpt_spans but 2 passage_spans recorded",)


def test_a_story_from_nothing_names_every_missing_table_and_still_renders():
    story = build_story("p1", {}, None)
    text = render_text(story)
    for table in ("instantiated_pairs", "judged_pairs", "query_templates", "documents", "training_corpus"):
        assert any(m.startswith(f"{table}: not materialized") for m in story.missing), table
        assert f"  - {table}: not materialized" in text
    assert "catalog.materializations: not readable" in text and story.mismatches == 0
