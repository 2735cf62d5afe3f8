"""Token-for-token budget: select instruction/answer pairs worth no more tokens than their documents."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class BudgetCandidate:
    """One generated pair and its token count."""

    pair_id: str
    tokens: int


@dataclass
class BudgetDocument:
    """A source document, its token count and the pairs generated from it."""

    doc_id: str
    doc_tokens: int
    candidates: list[BudgetCandidate] = field(default_factory=list)


@dataclass
class BudgetResult:
    """Selected pair ids (in selection order) and the token accounting."""

    selected: list[str]
    per_document: dict[str, int]
    total_doc_tokens: int
    total_selected_tokens: int
    final_rollover: int


def select_token_for_token(documents: Sequence[BudgetDocument], seed: int = 0) -> BudgetResult:
    """Select pairs so that, over every prefix of ``documents``, selected tokens <= document tokens.

    Documents are processed in order with budget = their tokens + the rollover left by earlier ones.
    Each document's candidates are shuffled by one ``random.Random(seed)`` (a shuffle per document, in
    order) and taken until the next one would exceed the remaining budget; what is left rolls over.
    """
    rng = random.Random(seed)
    selected: list[str] = []
    per_document: dict[str, int] = {}
    total_doc = total_selected = rollover = 0
    for document in documents:
        if document.doc_tokens < 0:
            raise ValueError(f"negative doc_tokens for {document.doc_id!r}")
        budget = document.doc_tokens + rollover
        total_doc += document.doc_tokens
        candidates = list(document.candidates)
        rng.shuffle(candidates)
        count = 0
        for candidate in candidates:
            if candidate.tokens < 0:
                raise ValueError(f"negative tokens for {candidate.pair_id!r}")
            if candidate.tokens > budget:
                break  # The paper stops at the first pair that does not fit.
            budget -= candidate.tokens
            total_selected += candidate.tokens
            selected.append(candidate.pair_id)
            count += 1
        per_document[document.doc_id] = per_document.get(document.doc_id, 0) + count
        rollover = budget
    return BudgetResult(
        selected=selected,
        per_document=per_document,
        total_doc_tokens=total_doc,
        total_selected_tokens=total_selected,
        final_rollover=rollover,
    )


def pair_tokens(count_tokens: Callable[[str], int], rendered_pair: str) -> int:
    """Tokens one pair costs in the corpus: its rendered text (formatting included) plus one EOS."""
    return count_tokens(rendered_pair) + 1


def budget_violations(doc_tokens: Sequence[tuple[str, int]], selected_tokens: dict[str, int]) -> list[str]:
    """Documents (in corpus order) where the selected pairs so far exceed the document tokens so far.

    The paper's rule allows a document's pairs to use budget left over by earlier documents, never more:
    over every prefix of the document order, selected tokens ≤ document tokens. Returns one message per
    violating document (empty list = the corpus honours the budget). Unknown documents are violations.
    """
    known = {d for d, _ in doc_tokens}
    out = [f"pairs of unknown document {d!r}" for d in selected_tokens if d not in known]
    doc_sum = sel_sum = 0
    for doc_id, n in doc_tokens:
        doc_sum += n
        sel_sum += selected_tokens.get(doc_id, 0)
        if sel_sum > doc_sum:
            out.append(f"after {doc_id!r}: {sel_sum} pair tokens > {doc_sum} document tokens")
    return out
