"""Bad entries in the document inbox: each one becomes a shard or a refusal that names it and says why, and
never stops the sensor for the other files (fi_resources.inbox, fi_assets.automation.new_shard_sensor)."""

import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fi_assets.automation import new_shard_sensor, shard_files
from fi_resources.inbox import resolve_shard, scan_inbox
from fi_resources.resources import InboxSettingsResource, WarehouseResource
from fi_resources.sources import InputFileError
from tests.faults.conftest import good_shard


def refusals(folder: Path) -> dict[str, str]:
    return {r.name: r.reason for r in scan_inbox(folder).refused}


def sensor_tick(inbox: Path, known: list[str] = ()) -> dg.SensorResult:
    """One real tick of the sensor over `inbox` (no built-in shards), on a fresh ephemeral instance."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("document_shards", list(known))
    resources = {
        "inbox": InboxSettingsResource(document_folder=str(inbox), builtin_shards=0),
        "warehouse": WarehouseResource(home=str(inbox.parent / "home")),
    }
    return new_shard_sensor(dg.build_sensor_context(instance=instance, resources=resources))


def skip_message(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def new_keys(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def test_dangling_symlink_is_refused_and_the_sensor_still_adds_the_other_files(inbox, fault):
    good_shard(inbox / "good.jsonl")
    (inbox / "gone.jsonl").symlink_to(inbox / "deleted.jsonl")
    assert "dangling symlink" in refusals(inbox)["gone.jsonl"]
    result = sensor_tick(inbox)  # on main: FileNotFoundError, no partition for anyone
    assert new_keys(result) == ["good"]
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["good"]
    fault("refused")


def test_symlink_to_a_file_outside_the_inbox_is_refused_and_cannot_be_read(inbox, tmp_path, fault):
    secret = good_shard(tmp_path / "secret.jsonl", title="Secret")
    (inbox / "leak.jsonl").symlink_to(secret)
    assert "outside the inbox" in refusals(inbox)["leak.jsonl"]
    assert "leak" not in shard_files(
        InboxSettingsResource(document_folder=str(inbox), builtin_shards=0),
        WarehouseResource(home=str(tmp_path)),
    )
    with pytest.raises(InputFileError, match="'leak.jsonl'.*outside the inbox"):
        resolve_shard(inbox, "leak")
    fault("refused")


def test_symlink_inside_the_inbox_is_a_shard(inbox, fault):
    (inbox / "data").mkdir()
    good_shard(inbox / "data" / "real.jsonl")
    (inbox / "alias.jsonl").symlink_to(inbox / "data" / "real.jsonl")
    assert resolve_shard(inbox, "alias") == inbox / "alias.jsonl"
    fault("accepted")


def test_symlink_loop_is_refused(inbox, fault):
    (inbox / "a.jsonl").symlink_to(inbox / "b.jsonl")
    (inbox / "b.jsonl").symlink_to(inbox / "a.jsonl")
    good_shard(inbox / "good.jsonl")
    assert set(refusals(inbox)) == {"a.jsonl", "b.jsonl"}
    assert new_keys(sensor_tick(inbox)) == ["good"]
    fault("refused")


@pytest.mark.parametrize("key", ["../../outside", "..", ".", "", "sub/file", "..\\up", ".hidden"])
def test_a_partition_key_naming_a_path_outside_the_inbox_is_refused(inbox, tmp_path, key, fault):
    good_shard(tmp_path / "outside.jsonl")
    good_shard(inbox / "good.jsonl")
    with pytest.raises(InputFileError, match="not a shard of"):
        resolve_shard(inbox, key)
    assert resolve_shard(inbox, "good") == inbox / "good.jsonl"
    fault("refused")


def test_directory_named_like_a_shard_is_refused(inbox, fault):
    (inbox / "x.jsonl").mkdir()
    good_shard(inbox / "y.jsonl")
    assert refusals(inbox)["x.jsonl"] == "is a directory, not a file"
    with pytest.raises(InputFileError, match="'x.jsonl': is a directory"):
        resolve_shard(inbox, "x")
    assert new_keys(sensor_tick(inbox)) == ["y"]
    fault("refused")


def test_same_stem_with_another_suffix_is_refused_naming_the_file_it_loses_to(inbox, fault):
    good_shard(inbox / "x.jsonl")
    pd.DataFrame({"text": ["other"]}).to_csv(inbox / "x.csv", index=False)
    pd.DataFrame({"text": ["other"]}).to_parquet(inbox / "x.parquet")
    scan = scan_inbox(inbox)
    assert scan.shards == {"x": inbox / "x.jsonl"}  # .jsonl first, as the documents asset always read it
    assert refusals(inbox) == {
        "x.csv": "same shard name 'x' as 'x.jsonl'; rename one of them",
        "x.parquet": "same shard name 'x' as 'x.jsonl'; rename one of them",
    }
    assert "x.csv" in skip_message(sensor_tick(inbox, known=["x"]))  # the tick says so, not silence
    fault("refused")


def test_unsupported_suffixes_and_hidden_files_are_refused_with_the_reason(inbox, fault):
    good_shard(inbox / "good.jsonl")
    for name in ("notes.txt", "UPPER.JSONL", "README", "good.jsonl.swp", ".good.jsonl", "._mac.jsonl"):
        (inbox / name).write_text("x")
    found = refusals(inbox)
    assert "unsupported suffix '.txt'" in found["notes.txt"]
    assert "unsupported suffix '.JSONL'" in found["UPPER.JSONL"]
    assert "unsupported suffix '(none)'" in found["README"]
    assert "unsupported suffix '.swp'" in found["good.jsonl.swp"]
    assert "hidden file" in found[".good.jsonl"] and "hidden file" in found["._mac.jsonl"]
    message = skip_message(sensor_tick(inbox, known=["good"]))
    assert "6 inbox file(s) refused" in message and "and 1 more" in message
    fault("refused")


def test_zero_byte_files_are_refused_until_they_have_content(inbox, fault):
    (inbox / "copying.jsonl").touch()
    (inbox / "empty.parquet").touch()
    assert refusals(inbox) == {"copying.jsonl": "is empty (0 bytes)", "empty.parquet": "is empty (0 bytes)"}
    assert skip_message(sensor_tick(inbox)).startswith("no new shard files; 2 inbox file(s) refused")
    good_shard(inbox / "copying.jsonl")  # the copy finished: the next tick takes it
    assert new_keys(sensor_tick(inbox)) == ["copying"]
    fault("refused")


def test_names_a_partition_key_cannot_hold_are_refused_and_do_not_stop_the_sensor(inbox, fault):
    good_shard(inbox / "good.jsonl")
    good_shard(inbox / "a...b.jsonl")  # Dagster refuses '...' and control characters in a key
    good_shard(inbox / "tab\there.jsonl")
    found = refusals(inbox)
    assert "partition key cannot hold" in found["a...b.jsonl"] and "partition key" in found["tab\there.jsonl"]
    assert new_keys(sensor_tick(inbox)) == ["good"]
    fault("refused")


def test_a_file_name_that_is_not_utf8_is_refused(inbox, fault):
    good_shard(inbox / "good.jsonl")
    with open(os.fsencode(inbox) + b"/caf\xe9.jsonl", "wb") as f:  # Latin-1 bytes from an old archive
        f.write(b'{"text": "x"}\n')
    (name,) = [n for n in refusals(inbox)]
    assert refusals(inbox)[name] == "the file name is not valid UTF-8; rename it"
    assert new_keys(sensor_tick(inbox)) == ["good"]
    fault("refused")


def test_a_pipe_is_refused_without_blocking(inbox, fault):
    os.mkfifo(inbox / "pipe.jsonl")  # opening it to read would wait forever
    assert refusals(inbox)["pipe.jsonl"] == "is not a regular file (a pipe, socket or device)"
    fault("refused")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(inbox, fault):
    path = good_shard(inbox / "locked.jsonl")
    path.chmod(0)
    assert refusals(inbox)["locked.jsonl"] == "cannot be read (permission denied)"
    fault("refused")


def test_unicode_names_are_shards(inbox, fault):
    for name in ("中文字", "日本語", "café", "a b"):
        good_shard(inbox / f"{name}.jsonl")
    assert sorted(new_keys(sensor_tick(inbox))) == sorted(["中文字", "日本語", "café", "a b"])
    fault("accepted")


def test_every_inbox_entry_is_a_shard_or_a_refusal(inbox, tmp_path, fault):
    # 55 entries, on main 48 partitions and 7 silent losses (or a crash): here each is accounted for.
    for i in range(40):
        good_shard(inbox / f"s{i:02d}.jsonl")
    for i in range(5):
        pd.DataFrame({"text": ["t"]}).to_csv(inbox / f"s{i:02d}.csv", index=False)  # stems taken
    (inbox / "gone.jsonl").symlink_to(inbox / "missing")
    (inbox / "out.jsonl").symlink_to(good_shard(tmp_path / "outside.jsonl"))
    (inbox / "dir.jsonl").mkdir()
    (inbox / "zero.csv").touch()
    for name in ("notes.md", ".DS_Store", "x...y.jsonl", "中文字.jsonl", "a b.jsonl", "a_b.jsonl"):
        (inbox / name).write_text('{"text": "x"}\n')
    scan = scan_inbox(inbox)
    assert len(scan.shards) + len(scan.refused) == len(list(inbox.iterdir())) == 55
    assert len(scan.shards) == 43 and len(scan.refused) == 12
    assert all(r.reason for r in scan.refused)
    fault("refused")


def test_the_schedule_is_not_stopped_by_a_dangling_symlink(inbox, fault):
    from fi_assets.automation import stale_shard_schedule

    good_shard(inbox / "good.jsonl")
    (inbox / "gone.jsonl").symlink_to(inbox / "deleted.jsonl")
    resources = {
        "inbox": InboxSettingsResource(document_folder=str(inbox), builtin_shards=0),
        "warehouse": WarehouseResource(home=str(inbox.parent / "home")),
    }
    # A schedule needs an instance it can re-open by reference; both are closed before the next test.
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("document_shards", ["good", "gone"])
        with dg.build_schedule_context(instance=instance, resources=resources) as context:
            requests = stale_shard_schedule(context)
    assert [r.partition_key for r in requests] == ["good"]  # never materialized; the refused one is not rerun
    fault("refused")
