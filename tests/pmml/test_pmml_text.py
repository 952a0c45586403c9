"""TextIndex: term frequencies in a text field, with normalisation, weights and fuzzy matching."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from conveyor.errors import ModelError
from conveyor.models.pmml import loads


def document(index: str, term: str = "<Constant>rain</Constant>") -> str:
    """A regression whose output ``f`` is one TextIndex over the input ``text``."""
    return f"""<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="text" optype="categorical" dataType="string"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>
<TransformationDictionary><DerivedField name="f" optype="continuous" dataType="double">
<TextIndex textField="text" {index}>{term}</TextIndex></DerivedField></TransformationDictionary>
<RegressionModel functionName="regression"><MiningSchema><MiningField name="y" usageType="target"/>
<MiningField name="text"/></MiningSchema>
<Output><OutputField name="freq" optype="continuous" dataType="double" feature="transformedValue">
<FieldRef field="f"/></OutputField></Output>
<RegressionTable intercept="0"><NumericPredictor name="f" coefficient="1"/></RegressionTable>
</RegressionModel></PMML>"""


TEXTS = ["Rain, rain, go away!", "no RAIN today", "", None, "rainy (rain) days; rain."]


def freq(index: str, texts: Sequence[str | None] = TEXTS, term: str | None = None) -> list[float]:
    doc = document(index) if term is None else document(index, term)
    return [float(v) for v in loads(doc).predict({"text": list(texts)})["freq"]]


def test_term_frequency_ignores_case_and_trims_punctuation_by_default() -> None:
    got = freq("")
    assert got[:3] == [2.0, 1.0, 0.0]
    assert np.isnan(got[3])  # a missing text has no frequency
    assert got[4] == 2.0  # "rainy" is another word; "(rain)" and "rain." are "rain"


def test_unicode_punctuation_is_trimmed_but_symbols_are_kept() -> None:
    # « » and … are punctuation (category P); $ and + are symbols, part of the word
    assert freq("", ["«rain» rain… ¿rain? $rain rain+"]) == [3.0]


def test_case_sensitive_index_counts_only_the_exact_case() -> None:
    assert freq("", ["Rain rain RAIN"]) == [3.0]
    assert freq('isCaseSensitive="true"', ["Rain rain RAIN"]) == [1.0]
    assert freq('isCaseSensitive="true"', ["rain rain"], "<Constant>Rain</Constant>") == [0.0]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("binary", [1.0, 1.0, 0.0]),
        ("logarithmic", [np.log10(3.0), np.log10(2.0), 0.0]),
        # 0.5 * (1 + f / the row's most frequent token's count): "rain" is the most frequent
        ("augmentedNormalizedTermFrequency", [1.0, 1.0, 0.0]),
    ],
)
def test_local_term_weights(weights: str, expected: list[float]) -> None:
    got = freq(f'localTermWeights="{weights}"', TEXTS[:3])
    np.testing.assert_allclose(got, expected, rtol=1e-15)


def test_augmented_frequency_divides_by_the_most_frequent_token() -> None:
    got = freq('localTermWeights="augmentedNormalizedTermFrequency"', ["rain go go go go"])
    assert got == [0.5 * (1 + 1 / 4)]


def test_multi_word_terms_count_consecutive_tokens_within_a_row() -> None:
    texts = ["heavy rain, then heavy rain", "heavy snow rain", "rain heavy"]
    assert freq("", texts, "<Constant>heavy rain</Constant>") == [2.0, 0.0, 0.0]


def test_levenshtein_distance_with_all_hits_and_best_hits() -> None:
    texts = ["rain rains rainy train"]
    assert freq('maxLevenshteinDistance="1"', texts) == [4.0]
    assert freq('maxLevenshteinDistance="1" countHits="bestHits"', texts) == [1.0]
    assert freq('maxLevenshteinDistance="1" countHits="bestHits"', ["rains trains"]) == [1.0]


def test_normalization_table_replaces_whole_words_before_counting() -> None:
    table = """<TextIndexNormalization><InlineTable>
<row><string>rains|raining</string><stem>rain</stem><regex>true</regex></row>
<row><string>drizzle</string><stem>rain</stem><regex>false</regex></row>
</InlineTable></TextIndexNormalization><Constant>rain</Constant>"""
    texts = ["it rains and keeps raining", "drizzle or drizzles", "brains"]
    assert freq("", texts, table) == [2.0, 1.0, 0.0]


def test_unsupported_and_malformed_text_indexes_are_refused_with_the_line() -> None:
    with pytest.raises(ModelError, match=r'line \d+: TextIndex tokenize="false" is not supported'):
        loads(document('tokenize="false"'))
    with pytest.raises(ModelError, match="localTermWeights='tfidf' is not supported"):
        loads(document('localTermWeights="tfidf"'))
    with pytest.raises(ModelError, match="TextIndex needs one expression giving its term"):
        loads(document("", term=""))
