"""Copy-constrained decoding of excerpt markers: inside ``<excerpt>…</excerpt>`` the decoder may only write
text that occurs in the document, so every marker it closes names real document text and the tags balance.

Pure logic over token ids and their decoded text: the decode loop asks a row's :class:`ExcerptCopyConstraint`
whether the model's favourite token is allowed (`accepts`) and, when it is not, which tokens are
(`allowed`); it then reports the token it chose (`advance`). Outside an excerpt the model is free, except
that it may not write a stray ``</excerpt>`` or ``<...>``. Inside one it copies: the prefix (and, after
``<...>``, the suffix) must be a run of document text starting at a word, the suffix after the prefix, and
end-of-text is refused until the marker is closed; it is closed by force when the token budget runs out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fi_resources.logic.excerpts import ELLIPSIS, EXCERPT_CLOSE, EXCERPT_OPEN, ExcerptError, locate_marker

_SPACE_RUN = re.compile(r"\s+")
# Tokens the budget keeps for closing a marker: "</excerpt>" is at most 4 BPE tokens (1 as a new token).
_CLOSE_RESERVE = 5


class TokenPieces:
    """The decoded text of every token id, indexed to find the tokens that are prefixes of a string."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self._ids_of: dict[str, list[int]] = {}
        for token_id, piece in enumerate(self.pieces):
            # A lone byte of a multi-byte character decodes to U+FFFD: it can never match document text.
            if piece and "\ufffd" not in piece:
                self._ids_of.setdefault(piece, []).append(token_id)
        self.longest = max((len(p) for p in self._ids_of), default=0)

    def prefixes_of(self, text: str) -> list[int]:
        """Ids of the tokens whose text is a non-empty prefix of ``text``."""
        found: list[int] = []
        for n in range(1, min(len(text), self.longest) + 1):
            found.extend(self._ids_of.get(text[:n], ()))
        return found


def _norm(piece: str) -> str:
    return _SPACE_RUN.sub(" ", piece)


class ExcerptCopyConstraint:
    """One row's decoding state (see the module docstring)."""

    FREE, PREFIX, SUFFIX = "free", "prefix", "suffix"

    def __init__(
        self,
        document: str,
        pieces: TokenPieces,
        eos: set[int],
        max_new_tokens: int,
        max_span_chars: int = 4000,
    ) -> None:
        # Whitespace-collapsed, as `expand_excerpts` matches marker text.
        self.doc = " ".join(document.split())
        self.pieces = pieces
        self.eos = eos
        self.remaining = max_new_tokens
        self.max_span_chars = max_span_chars
        self._word_starts = [m.start() for m in re.finditer(r"\S+", self.doc)]
        self.mode = self.FREE
        self.tail = ""  # the last characters written outside a marker (finds "<excerpt>" across tokens)
        self.marker: str | None = None  # the text of a marker ("<...>", "</excerpt>") being written
        self.marker_options: list[str] = []  # the markers it can still become
        self.ends: set[int] = set()  # where in the document the current prefix/suffix text can end
        self.body = ""  # the current prefix or suffix text so far
        self.prefix_ends: set[int] = set()
        self.prefix_body = ""
        self.gave_up = False  # True once a marker could not go on (its document text has no token)
        self.forced = 0  # tokens chosen by the constraint instead of the model

    # ---- queries ----------------------------------------------------------------------------------
    def _markers(self) -> list[str]:
        if self.mode == self.FREE or not self.body.strip():
            return []
        if self.remaining <= _CLOSE_RESERVE:
            return [EXCERPT_CLOSE]  # out of budget: close even a marker that names no single span
        markers = [ELLIPSIS] if self.mode == self.PREFIX else []
        return [*markers, EXCERPT_CLOSE] if self._names_one_span() else markers

    def _names_one_span(self) -> bool:
        """Whether closing now gives a marker that names exactly one span (else: copy on until it does)."""
        body = self.body if self.mode == self.PREFIX else f"{self.prefix_body}{ELLIPSIS}{self.body}"
        try:
            locate_marker(body, self.doc, self.max_span_chars)
        except ExcerptError:
            return False
        return True

    def _starts(self) -> list[int]:
        """Document positions a prefix or suffix may start at: word starts (after the prefix, for a suffix)."""
        if self.mode == self.PREFIX:
            return self._word_starts
        first = min(self.prefix_ends)
        last = max(self.prefix_ends) + self.max_span_chars
        return [p for p in self._word_starts if first <= p <= last]

    def _copy_ends(self, piece: str) -> set[int]:
        """Document positions where the body would end after ``piece`` (empty: the piece is not a copy)."""
        piece = _norm(piece)
        if not piece:
            return set()
        if not self.body:
            text = piece.lstrip(" ")
            if not text:  # a lone space before the first word: allowed (markers are stripped)
                return set(self._starts())
            return {p + len(text) for p in self._starts() if self.doc.startswith(text, p)}
        return {e + len(piece) for e in self.ends if self.doc.startswith(piece, e)}

    def _marker_after(self, piece: str) -> tuple[str, list[str]] | None:
        """(marker text, markers it can still become) after ``piece``; None if it writes no allowed marker."""
        if self.marker is not None:
            text, options = self.marker + piece, self.marker_options
        else:
            text, options = piece.lstrip(" "), self._markers()
        options = [m for m in options if text and m.startswith(text)]
        return (text, options) if options else None

    def accepts(self, token: int) -> bool:
        if self.gave_up:
            return True
        piece = self.pieces.pieces[token] if token < len(self.pieces.pieces) else ""
        if self.mode == self.FREE:
            written = self.tail + piece
            # A closing tag or an ellipsis outside an excerpt would be unbalanced markup.
            return not any(m in written and m not in self.tail for m in (EXCERPT_CLOSE, ELLIPSIS))
        if token in self.eos or not piece:
            return False
        if self.marker is not None or (self.remaining <= _CLOSE_RESERVE and self.body.strip()):
            return self._marker_after(piece) is not None  # finishing a marker, or out of budget: close
        return self._marker_after(piece) is not None or bool(self._copy_ends(piece))

    def allowed(self) -> list[int] | None:
        """The tokens allowed now; None outside an excerpt (anything the check accepts)."""
        if self.gave_up or self.mode == self.FREE:
            return None
        out: list[int] = []
        if self.marker is not None:
            for option in self.marker_options:
                out.extend(self.pieces.prefixes_of(option[len(self.marker) :]))
            return list(dict.fromkeys(out))
        for marker in self._markers():
            out.extend(self.pieces.prefixes_of(marker))
        if self.remaining <= _CLOSE_RESERVE and self.body.strip():
            return out
        if not self.body:
            for p in self._starts():
                out.extend(self.pieces.prefixes_of(self.doc[p : p + self.pieces.longest]))
                if p:
                    out.extend(self.pieces.prefixes_of(self.doc[p - 1 : p - 1 + self.pieces.longest]))
        else:
            for e in self.ends:
                out.extend(self.pieces.prefixes_of(self.doc[e : e + self.pieces.longest]))
        # Every candidate is a copy or a marker by construction; only end-of-text stays refused.
        return [t for t in dict.fromkeys(out) if t not in self.eos]

    # ---- transitions ------------------------------------------------------------------------------
    def advance(self, token: int, forced: bool = False) -> None:
        """Record the token written (``forced``: chosen by the constraint over the model's favourite)."""
        self.remaining -= 1
        self.forced += forced
        piece = self.pieces.pieces[token] if token < len(self.pieces.pieces) else ""
        if self.gave_up:
            return
        if self.mode == self.FREE:
            self.tail = (self.tail + piece)[-64:]
            at = self.tail.rfind(EXCERPT_OPEN)
            if at != -1:
                rest = self.tail[at + len(EXCERPT_OPEN) :]
                self.tail = ""
                self._open(rest)
            return
        after = self._marker_after(piece)
        if after is not None:
            self.marker, self.marker_options = after
            if self.marker in self.marker_options:
                self._finish(self.marker)
            return
        ends = self._copy_ends(piece)
        if not ends:
            self.gave_up = True  # e.g. the model went on after a forced token the document cannot follow
            return
        self.ends = ends
        self.body += piece

    def _open(self, rest: str) -> None:
        self.mode, self.body, self.ends, self.marker = self.PREFIX, "", set(), None
        if rest:  # text that came in the same token as "<excerpt>"
            ends = self._copy_ends(rest)
            if not ends:
                self.gave_up = True
                return
            self.body, self.ends = rest, ends

    def _finish(self, marker: str) -> None:
        self.marker, self.marker_options = None, []
        if marker == ELLIPSIS:
            self.prefix_ends, self.prefix_body = self.ends, self.body
            self.mode, self.body, self.ends = self.SUFFIX, "", set()
        else:
            self.mode, self.body, self.ends, self.tail = self.FREE, "", set(), ""


__all__ = ["EXCERPT_OPEN", "ExcerptCopyConstraint", "TokenPieces"]
