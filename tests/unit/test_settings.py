"""Per-stage settings sections, flat overrides, the FI_SETTINGS file, and profiles as part choices."""

import pytest

from fi_resources.profiles import get_profile
from fi_resources.settings import (
    SECTIONS,
    InboxSettings,
    JudgeSettings,
    group_overrides,
    section_of,
    settings_file_overrides,
)


def test_every_setting_belongs_to_exactly_one_section():
    owners: dict[str, list[str]] = {}
    for key, cls in SECTIONS.items():
        for name in cls.model_fields:
            if name != "seed":
                owners.setdefault(name, []).append(key)
    assert {n: o for n, o in owners.items() if len(o) > 1} == {}
    assert section_of("keep_score") == "judge_settings"
    assert section_of("passage_chars") == "document_settings"


def test_flat_overrides_find_their_section_and_seed_goes_everywhere():
    grouped = group_overrides({"keep_score": 5, "seed": 7, "pretrain_epochs": 3})
    assert grouped["judge_settings"] == {"keep_score": 5, "seed": 7}
    assert grouped["pretrain_settings"] == {"pretrain_epochs": 3, "seed": 7}
    assert all(values["seed"] == 7 for values in grouped.values())
    with pytest.raises(ValueError, match="unknown setting 'keep_scor'.*keep_score"):
        group_overrides({"keep_scor": 5})


def test_settings_file_flat_or_grouped(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("passage_chars: 2000\njudge_settings:\n  keep_score: 5\n")
    assert settings_file_overrides(path) == {"passage_chars": 2000, "keep_score": 5}
    monkeypatch.setenv("FI_SETTINGS", str(path))
    assert settings_file_overrides() == {"passage_chars": 2000, "keep_score": 5}
    monkeypatch.delenv("FI_SETTINGS")
    assert settings_file_overrides() == {}
    path.write_text("judging:\n  keep_score: 5\n")
    with pytest.raises(ValueError, match="unknown settings section 'judging'"):
        settings_file_overrides(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        settings_file_overrides(path)
    path.write_text("min_grounding_ratio: 0.5\n")
    with pytest.raises(ValueError, match="unknown setting 'min_grounding_ratio'"):
        settings_file_overrides(path)


def test_fingerprints_cover_what_shapes_outputs():
    assert JudgeSettings(keep_score=5).fingerprint() != JudgeSettings().fingerprint()
    # Folders say where the input files are; the files are the data.
    assert InboxSettings(document_folder="/x").fingerprint() == InboxSettings().fingerprint() == {}


def test_profiles_choose_parts_without_branches_in_code():
    embedded = get_profile("embedded")
    assert embedded.teacher_for("instantiate") == "rules"
    assert embedded.teacher_for("instantiate", override="llm") == "llm"
    assert get_profile("paper").judge == "flow-judge" and embedded.judge == "likelihood"
    with pytest.raises(ValueError, match="unknown teacher job 'translate'"):
        embedded.teacher_for("translate")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_paper_profile_is_sized_like_the_paper_and_files_scale_it_down(tmp_path, monkeypatch):
    from fi_assets.definitions import build_resources

    monkeypatch.delenv("FI_SETTINGS", raising=False)
    paper = build_resources("paper", home=str(tmp_path))
    assert paper["instantiation_settings"].instantiator_rounds == 2
    assert paper["instantiation_settings"].silver_instantiations == 100_000
    assert paper["instantiation_settings"].round2_examples == 100_000
    assert paper["template_bank_settings"].silver_templates == 50_000
    assert paper["student_settings"].student_precision == "bf16"
    assert build_resources("embedded", home=str(tmp_path))["instantiation_settings"].instantiator_rounds == 1
    path = tmp_path / "small.yaml"
    path.write_text("silver_instantiations: 500\ninstantiator_rounds: 1\n")
    monkeypatch.setenv("FI_SETTINGS", str(path))
    small = build_resources("paper", home=str(tmp_path))["instantiation_settings"]
    assert (small.silver_instantiations, small.instantiator_rounds, small.round2_examples) == (
        500,
        1,
        100_000,
    )
