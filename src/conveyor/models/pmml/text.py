"""TextIndex: how often a term occurs in a text field, weighted, for a whole batch at once.

A text pipeline's document holds one TextIndex call per vocabulary term,
all over the same text column, so the column is normalised and tokenised
once (cached against the column) into a flat array of token ids sorted by
id; each term is then a binary search and a ``bincount``::

    <TextIndex textField="document" localTermWeights="termFrequency">
        <FieldRef field="term"/>
    </TextIndex>

Tokens are split on ``wordSeparatorCharacterRE`` (``\\s+``) and trimmed of
leading and trailing punctuation (Unicode category P), as sklearn2pmml's
Splitter and the reference evaluator do. TextIndexNormalization tables,
case (in)sensitivity, ``maxLevenshteinDistance`` with ``countHits`` and the
four ``localTermWeights`` are supported; ``tokenize="false"`` is not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from conveyor.errors import ModelError
from conveyor.models.pmml._values import Array, cast, is_missing
from conveyor.models.pmml._xml import Element, unsupported
from conveyor.models.pmml.scope import Scope

__all__ = ["compile_text_index"]

Expr = Callable[[Scope], Array]
Ints = npt.NDArray[np.intp]

_WEIGHTS = ("termFrequency", "binary", "logarithmic", "augmentedNormalizedTermFrequency")


@lru_cache(maxsize=1 << 16)
def _trim(token: str) -> str:
    """A token without leading and trailing punctuation (Unicode category P).

    Looked up end by end rather than with a set of every punctuation character,
    which would take a second to build on the first text document.
    """
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start])[0] == "P":
        start += 1
    while end > start and unicodedata.category(token[end - 1])[0] == "P":
        end -= 1
    return token[start:end]


class _Normalization:
    """One TextIndexNormalization: its table's replacements applied in order."""

    def __init__(self, el: Element, separator: str, case_sensitive: bool) -> None:
        in_col = el.get("inField", "string")
        out_col = el.get("outField", "stem")
        regex_col = el.get("regexField", "regex")
        self.recursive = el.get("recursive", "false") == "true"
        case_sensitive = el.get("isCaseSensitive", str(case_sensitive).lower()) == "true"
        separator = el.get("wordSeparatorCharacterRE", separator)
        tokenize = el.get("tokenize", "true") == "true"
        table = el.find("InlineTable")
        if table is None:
            raise unsupported(el, "TextIndexNormalization without an InlineTable")
        self.rules: list[tuple[re.Pattern[str], str]] = []
        for row in table.findall("row"):
            cells = {c.tag: c.text for c in row.children}
            if in_col not in cells:
                continue
            pattern = cells[in_col]
            if cells.get(regex_col, "false").strip() != "true":
                pattern = re.escape(pattern)
            if tokenize:
                # a replacement is of whole words: bounded by separators or the text's ends
                pattern = f"(^|{separator})(?:{pattern})(?=(?:{separator})|$)"
            replacement = cells.get(out_col, "").replace("\\", "\\\\")
            try:
                compiled = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
            except re.error as exc:
                raise ModelError(
                    f"{row.where}: bad regular expression {pattern!r} ({exc})"
                ) from None
            self.rules.append((compiled, ("\\1" if tokenize else "") + replacement))

    def __call__(self, text: str) -> str:
        for _ in range(100 if self.recursive else 1):
            before = text
            for pattern, replacement in self.rules:
                text = pattern.sub(replacement, text)
            if text == before:
                break
        return text


class _Index:
    """A text column tokenised: token ids per position, sorted by id, with their rows."""

    def __init__(self, texts: list[str | None], tokenize: Callable[[str], list[str]]) -> None:
        self.n = len(texts)
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        rows: list[int] = []
        self.tokens: list[list[str]] = []
        for i, text in enumerate(texts):
            tokens = tokenize(text) if text is not None else []
            self.tokens.append(tokens)
            for token in tokens:
                ids.append(self.vocab.setdefault(token, len(self.vocab)))
                rows.append(i)
        self.ids = np.asarray(ids, dtype=np.intp)
        self.rows = np.asarray(rows, dtype=np.intp)
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted_ids = self.ids[self.order]
        self._max: npt.NDArray[np.float64] | None = None

    def count(self, term: list[str]) -> Ints:
        """Exact occurrences of the token sequence ``term`` in every row."""
        first = self.vocab.get(term[0]) if term else None
        if first is None:
            return np.zeros(self.n, dtype=np.intp)
        lo, hi = np.searchsorted(self.sorted_ids, [first, first + 1])
        starts = self.order[lo:hi]
        for k, token in enumerate(term[1:], start=1):
            tid = self.vocab.get(token)
            if tid is None:
                return np.zeros(self.n, dtype=np.intp)
            at = starts + k
            ok = at < len(self.ids)
            starts, at = starts[ok], at[ok]
            starts = starts[(self.ids[at] == tid) & (self.rows[at] == self.rows[starts])]
        return np.bincount(self.rows[starts], minlength=self.n)

    def max_frequency(self) -> npt.NDArray[np.float64]:
        """The count of each row's most frequent token (0 for an empty row)."""
        if self._max is None:
            out = np.zeros(self.n)
            if len(self.ids):
                pairs, counts = np.unique(
                    self.rows * len(self.vocab) + self.ids, return_counts=True
                )
                np.maximum.at(out, pairs // len(self.vocab), counts.astype(np.float64))
            self._max = out
        return self._max


def _levenshtein(a: str, b: str, limit: int) -> int:
    """Edit distance of two tokens (anything above ``limit`` reported as limit + 1)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return min(previous[-1], limit + 1)


def _fuzzy_count(tokens: list[str], term: list[str], limit: int, best: bool) -> int:
    """Occurrences of ``term`` within ``limit`` edits in all (allHits) or at the least
    distance found (bestHits)."""
    k = len(term)
    distances = []
    for start in range(len(tokens) - k + 1):
        total = 0
        for token, wanted in zip(tokens[start : start + k], term, strict=True):
            total += _levenshtein(token, wanted, limit - total)
            if total > limit:
                break
        if total <= limit:
            distances.append(total)
    if not distances:
        return 0
    return distances.count(min(distances)) if best else len(distances)


def compile_text_index(el: Element, term_expr: Expr) -> Expr:
    """A TextIndex element -> the weighted frequency of its term in its text field per row."""
    text_field = el.require("textField")
    weights = el.get("localTermWeights", "termFrequency")
    if weights not in _WEIGHTS:
        raise unsupported(el, f"TextIndex localTermWeights={weights!r}")
    if el.get("tokenize", "true") != "true":
        raise unsupported(el, 'TextIndex tokenize="false"')
    case_sensitive = el.get("isCaseSensitive", "false") == "true"
    limit = int(el.get("maxLevenshteinDistance", "0"))
    best = el.get("countHits", "allHits") == "bestHits"
    separator = el.get("wordSeparatorCharacterRE", r"\s+")
    try:
        splitter = re.compile(separator)
    except re.error as exc:
        raise ModelError(f"{el.where}: bad wordSeparatorCharacterRE ({exc})") from None
    normalizations = [
        _Normalization(n, separator, case_sensitive) for n in el.findall("TextIndexNormalization")
    ]

    def tokenize(text: str) -> list[str]:
        for normalize in normalizations:
            text = normalize(text)
        if not case_sensitive:
            text = text.lower()
        return [t for t in map(_trim, splitter.split(text)) if t]

    def term_tokens(term: str) -> list[str]:
        if not case_sensitive:
            term = term.lower()
        return [t for t in map(_trim, splitter.split(term)) if t]

    # one entry: the column last indexed and its index (the calls of a batch share it)
    last: list[tuple[Array, _Index]] = []

    def index_of(column: Array) -> _Index:
        if last and last[0][0] is column:
            return last[0][1]
        texts = cast(column, "string").tolist()
        index = _Index(texts, tokenize)
        last[:] = [(column, index)]
        return index

    def frequencies(index: _Index, term: str) -> npt.NDArray[np.float64]:
        tokens = term_tokens(term)
        if limit > 0:
            return np.array(
                [_fuzzy_count(row, tokens, limit, best) for row in index.tokens], dtype=np.float64
            )
        return index.count(tokens).astype(np.float64)

    def evaluate(scope: Scope) -> Array:
        column = scope.get(text_field)
        terms = term_expr(scope)
        index = index_of(column)
        out = np.full(scope.n, np.nan)
        known = ~is_missing(terms)
        if known.any():
            term_values = cast(terms, "string")
            for term in dict.fromkeys(term_values[known].tolist()):
                rows = known & (term_values == term)
                out[rows] = frequencies(index, term)[rows]
        out[is_missing(column)] = np.nan
        if weights == "binary":
            out = np.where(out > 0, 1.0, np.where(np.isnan(out), np.nan, 0.0))
        elif weights == "logarithmic":
            out = np.log10(1.0 + out)
        elif weights == "augmentedNormalizedTermFrequency":
            peak = index.max_frequency()
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(peak > 0, out / peak, 0.0)
            out = 0.5 * (np.where(out > 0, 1.0, 0.0) + ratio)
        return out

    return evaluate
