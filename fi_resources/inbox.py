"""The document inbox: which files are shards (one partition each) and why every other entry is refused.

Every entry of the folder either becomes a shard or gets a `Refusal` naming it and saying why, so no file is
dropped without a word. A shard key is the file's stem; it never names a path outside the inbox.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

INPUT_SUFFIXES = (".jsonl", ".parquet", ".csv")


class InputFileError(ValueError):
    """A user file that cannot be read; the message names the file and what is wrong."""


# Substrings Dagster refuses in a partition key (dagster's INVALID_PARTITION_SUBSTRINGS): one such file
# name would make the sensor raise on every tick, for every other new file too.
_INVALID_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


@dataclass(frozen=True)
class Refusal:
    """An inbox entry that is not a shard, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name!r}: {self.reason}"


@dataclass
class InboxScan:
    """The shards of an inbox (key → file and its mtime, in key order) and the refused entries."""

    shards: dict[str, Path] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)


def shard_key_problem(key: str) -> str | None:
    """Why `key` cannot name a shard file in the inbox (None when it can). Checked wherever a key becomes a
    path, so a key such as '../../outside' is refused before any file is opened."""
    if not key or key in (".", ".."):
        return "is not a file name"
    if "/" in key or "\\" in key:
        return "contains a path separator"
    if key.startswith("."):
        return "starts with '.' (hidden files are not shards)"
    if any(part in key for part in _INVALID_KEY_PARTS):
        return "contains '...' or a control character, which a partition key cannot hold"
    try:
        key.encode("utf8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def scan_inbox(folder: Path) -> InboxScan:
    """Sort every entry of `folder` into shards and refusals. Per stem, the first suffix of
    `INPUT_SUFFIXES` wins (x.jsonl over x.csv); the others are refused, naming the file they lose to."""
    scan, root = InboxScan(), folder.resolve()
    entries = sorted(folder.iterdir(), key=lambda p: (p.stem, _suffix_rank(p.suffix), p.name))
    for path in entries:
        reason = entry_problem(path, root)
        if reason is None and path.stem in scan.shards:
            reason = f"same shard name {path.stem!r} as {scan.shards[path.stem].name!r}; rename one of them"
        if reason is None:
            stat, reason = stat_problem(path)
        if reason is not None:
            scan.refused.append(Refusal(path.name, reason))
            continue
        scan.shards[path.stem] = path
        scan.mtimes[path.stem] = stat.st_mtime
    scan.refused.sort(key=lambda r: r.name)
    return scan


def stat_problem(path: Path) -> tuple[os.stat_result | None, str | None]:
    """The entry's stat, and why it cannot be read yet: gone since the listing, or empty (often a file still
    being copied in: it is taken on a later look, once it has content)."""
    try:
        stat = path.stat()
    except OSError as exc:  # removed or replaced between the listing and now
        return None, f"cannot be read ({exc.strerror})"
    return stat, "is empty (0 bytes)" if stat.st_size == 0 else None


def resolve_shard(folder: Path, key: str) -> Path:
    """The file of shard `key` in `folder`; raises `InputFileError` saying why there is none."""
    problem = shard_key_problem(key)
    if problem is not None:
        raise InputFileError(f"shard {key!r} {problem}: not a shard of {folder}")
    scan = scan_inbox(folder)
    if key in scan.shards:
        return scan.shards[key]
    why = [str(r) for r in scan.refused if Path(r.name).stem == key]
    if why:
        raise InputFileError(f"shard {key!r}: its file in {folder} is refused ({'; '.join(why)})")
    raise InputFileError(f"shard {key!r}: no file {key}{{{','.join(INPUT_SUFFIXES)}}} in {folder}")


def _suffix_rank(suffix: str) -> int:
    return INPUT_SUFFIXES.index(suffix) if suffix in INPUT_SUFFIXES else len(INPUT_SUFFIXES)


def entry_problem(path: Path, root: Path) -> str | None:
    """Why one entry of the inbox folder `root` (resolved) is not an input file (None when it is one)."""
    name = path.name
    try:
        name.encode("utf8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8; rename it"
    if name.startswith("."):
        return "hidden file (names starting with '.' are editor and system files)"
    if path.suffix not in INPUT_SUFFIXES:
        return (
            f"unsupported suffix {path.suffix or '(none)'!r}; shard files end in {', '.join(INPUT_SUFFIXES)}"
        )
    problem = shard_key_problem(path.stem)
    if problem is not None:
        return f"the shard name {problem}"
    if path.is_symlink():
        try:
            target = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            return "symlink loop"
        if not target.exists():
            return f"dangling symlink (its target {str(target)!r} does not exist)"
        if not target.is_relative_to(root):
            return f"symlink to {str(target)!r}, outside the inbox {str(root)!r}"
    if path.is_dir():
        return "is a directory, not a file"
    if not path.is_file():
        return "is not a regular file (a pipe, socket or device)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None
