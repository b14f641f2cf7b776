"""The synthetic corpus: deterministic, fast, facts consistent with its table, redundancy as asked."""

from __future__ import annotations

import re
import time

from scalegrid.spec import SyntheticCorpusSpec
from scalegrid.data.synthetic import TEMPLATES, facts, generate_documents


def test_deterministic_from_its_seed():
    spec = SyntheticCorpusSpec(documents=200, seed=7)
    assert generate_documents(spec) == generate_documents(spec)
    assert generate_documents(spec) != generate_documents(SyntheticCorpusSpec(documents=200, seed=8))


def test_default_size_is_fast():
    start = time.perf_counter()
    documents = generate_documents(SyntheticCorpusSpec())
    assert time.perf_counter() - start < 1.0
    assert len(documents) == 4000 and all(documents)


def _fact_pattern(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{e\}", r"(?P<e>\w+)").replace(r"\{a\}", r"(?P<a>\w+)")
    return re.compile(pattern.replace(r"\{v\}", r"(?P<v>\w+)"))


def _facts_in(document: str, table: dict) -> list[tuple[str, str, str]]:
    patterns = [_fact_pattern(t) for t in TEMPLATES]
    found = []
    for sentence in re.split(r"(?<= \.) ", document):
        for pattern in patterns:
            match = pattern.fullmatch(sentence)
            if match and (match["e"], match["a"]) in table:
                found.append((match["e"], match["a"], match["v"]))
                break
    return found


def test_every_fact_sentence_agrees_with_the_table():
    spec = SyntheticCorpusSpec(documents=300, entities=50, seed=2)
    table = facts(spec)
    found = [f for doc in generate_documents(spec) for f in _facts_in(doc, table)]
    assert len(found) == 300 * spec.facts_per_document
    assert all(table[e, a] == v for e, a, v in found)


def test_entities_and_filler_are_zipfian():
    spec = SyntheticCorpusSpec(documents=1000, seed=3)
    words = " ".join(generate_documents(spec)).split()
    counts = sorted((words.count(w) for w in set(words)), reverse=True)
    assert counts[0] > 20 * counts[100] > 0  # a heavy head and a long tail


def test_redundancy_repeats_and_paraphrases_earlier_documents():
    def counts(redundancy: float) -> tuple[int, int]:
        spec = SyntheticCorpusSpec(documents=1000, seed=4, redundancy=redundancy)
        table = facts(spec)
        documents = generate_documents(spec)
        seen_text, seen_facts, duplicates, paraphrases = set(), set(), 0, 0
        for doc in documents:
            fact_set = frozenset(_facts_in(doc, table))
            duplicates += doc in seen_text
            paraphrases += doc not in seen_text and fact_set in seen_facts
            seen_text.add(doc)
            seen_facts.add(fact_set)
        return duplicates, paraphrases

    assert counts(0.0) == (0, 0)
    duplicates, paraphrases = counts(0.6)  # 600 repeats, about half verbatim
    assert duplicates + paraphrases == 600 and 200 < duplicates < 400
    assert len(generate_documents(SyntheticCorpusSpec(documents=50, redundancy=1.0))) == 50
