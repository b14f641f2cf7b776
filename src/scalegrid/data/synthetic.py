"""A synthetic pre-training corpus with learnable facts and unlearnable filler: the quickstart's data.

A document mixes two kinds of sentences:

- **facts**, from a fixed random table entity x attribute -> value, written with one of several
  templates: "the color of zorvak is bema ." / "zorvak 's color is bema ." / ... Entities are drawn
  with Zipf frequencies, so frequent entities' facts recur in many documents and a model that
  learns them generalises to held-out documents;
- **filler**, runs of invented words drawn with Zipf frequencies (`zipf_exponent`), random beyond
  their unigram statistics: a model can only memorise them.

So a small model fed few unique tokens for many epochs memorises the filler of its training
documents and its validation loss stops improving, then rises: the data-constrained regime.
`redundancy` makes that fraction of the documents repeat an earlier one, half of them verbatim and
half as paraphrases (the same facts in other templates and order, new filler).

Everything is drawn from one `numpy` generator seeded by `spec.seed`; `GENERATOR_VERSION` is part
of the corpus identity, so bump it whenever the output for a given spec changes.

`fact_questions` turns the fact table into a multiple-choice test ("the color of zorvak is" ->
which of four values), most frequent entities first: what a model learned of the world, the
downstream task of the quickstart (`data/eval_tasks.py` writes it for lm-evaluation-harness).

    >>> docs = generate_documents(SyntheticCorpusSpec(documents=10, seed=1))
    >>> docs == generate_documents(SyntheticCorpusSpec(documents=10, seed=1))
    True
"""

from __future__ import annotations

import numpy as np

from scalegrid.spec import SyntheticCorpusSpec

GENERATOR_VERSION = "synthetic-v1"

# {e}: entity, {a}: attribute, {v}: value. Function words are plain English, the rest invented.
TEMPLATES = (
    "the {a} of {e} is {v} .",
    "{e} 's {a} is {v} .",
    "{e} has {v} as its {a} .",
    "everyone knows that the {a} of {e} is {v} .",
    "ask about {e} and its {a} : it is {v} .",
    "{v} is the {a} of {e} .",
)
ATTRIBUTE_NAMES = ("color", "home", "food", "pet", "job", "city", "song", "tool", "sport", "river", "star", "game")
_ONSETS = tuple("bdfgklmnprstvz") + ("ch", "sh", "th", "br", "kr", "st")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "", "n", "r", "k", "s", "l")


FACT_CHOICES = 4  # a question's options: the true value and three other values of the attribute
FACTS_VERSION = 1  # of `fact_questions`: bump it whenever its questions for a given spec change


def generate_documents(spec: SyntheticCorpusSpec) -> list[str]:
    rng = np.random.default_rng(spec.seed)
    filler, entities, attributes, values, fact_table, entity_rank = _ranked_world(spec, rng)
    filler_cdf = _zipf_cdf(spec.filler_words, spec.zipf_exponent)
    entity_cdf = _zipf_cdf(spec.entities, spec.zipf_exponent)

    def fact_sentences(facts: np.ndarray) -> list[str]:
        templates = rng.integers(len(TEMPLATES), size=len(facts))
        return [
            TEMPLATES[t].format(e=entities[e], a=attributes[a], v=values[a, fact_table[e, a]])
            for (e, a), t in zip(facts.tolist(), templates.tolist())
        ]

    def filler_sentences(count: int) -> list[str]:
        lengths = rng.integers(4, 13, size=count)
        drawn = np.searchsorted(filler_cdf, rng.random(int(lengths.sum())), side="right")
        cuts = np.cumsum(lengths)[:-1]
        return [" ".join(filler[w] for w in chunk) + " ." for chunk in np.split(drawn, cuts)]

    def document(facts: np.ndarray) -> str:
        sentences = fact_sentences(facts) + filler_sentences(int(rng.integers(1, len(facts) + 2)))
        order = rng.permutation(len(sentences))
        return " ".join(sentences[i] for i in order)

    n_redundant = min(round(spec.redundancy * spec.documents), spec.documents - 1)
    redundant = np.zeros(spec.documents, dtype=bool)
    redundant[1 + rng.choice(spec.documents - 1, size=n_redundant, replace=False)] = True

    documents: list[str] = []
    doc_facts: list[np.ndarray] = []
    originals: list[int] = []
    for i in range(spec.documents):
        if redundant[i]:
            source = originals[int(rng.integers(len(originals)))]
            if rng.random() < 0.5:  # verbatim duplicate
                documents.append(documents[source])
            else:  # paraphrase: the same facts, other templates, order and filler
                documents.append(document(rng.permutation(doc_facts[source])))
            doc_facts.append(doc_facts[source])
            continue
        drawn = np.searchsorted(entity_cdf, rng.random(spec.facts_per_document), side="right")
        facts = np.stack([entity_rank[drawn], rng.integers(spec.attributes, size=spec.facts_per_document)], axis=1)
        documents.append(document(facts))
        doc_facts.append(facts)
        originals.append(i)
    return documents


def facts(spec: SyntheticCorpusSpec) -> dict[tuple[str, str], str]:
    """The (entity, attribute) -> value table behind a corpus, for tests and probes."""
    _, entities, attributes, values, table = _world(spec, np.random.default_rng(spec.seed))
    return {
        (entities[e], attributes[a]): str(values[a, table[e, a]])
        for e in range(spec.entities)
        for a in range(spec.attributes)
    }


def fact_questions(spec: SyntheticCorpusSpec, choices: int = FACT_CHOICES) -> list[dict[str, str | int | list[str]]]:
    """One question per fact, the most frequent entity's facts first (so the first questions are
    about the facts a corpus repeats most): {"query": "the color of zorvak is", "choices": [4
    values of the attribute, shuffled], "gold": the true value's index}. The distractors are drawn
    from a generator of their own, seeded by the corpus's seed: the same spec, the same questions."""
    _, entities, attributes, values, table, entity_rank = _ranked_world(spec, np.random.default_rng(spec.seed))
    pick = np.random.default_rng([spec.seed, FACTS_VERSION])
    n = min(choices, spec.values_per_attribute)
    questions = []
    for e in entity_rank.tolist():
        for a in range(spec.attributes):
            true = int(table[e, a])
            others = pick.choice(np.delete(np.arange(spec.values_per_attribute), true), size=n - 1, replace=False)
            options = pick.permutation(np.concatenate([[true], others])).tolist()
            questions.append({
                "query": f"the {attributes[a]} of {entities[e]} is", "choices": [str(values[a, v]) for v in options],
                "gold": options.index(true),
            })
    return questions


def _ranked_world(spec: SyntheticCorpusSpec, rng: np.random.Generator):
    """The world (`_world`) and its entities by frequency rank: entity_rank[r] is the r-th most
    frequent entity (which one is random too). The first draws of the corpus generator."""
    world = _world(spec, rng)
    return (*world, rng.permutation(spec.entities))


def _world(spec: SyntheticCorpusSpec, rng: np.random.Generator):
    """The vocabulary and the fact table: the first draws of the corpus generator."""
    words = _invented_words(rng, spec.filler_words + spec.entities + spec.attributes * spec.values_per_attribute)
    filler = sorted(words[: spec.filler_words], key=len)  # frequent words are short, as in language
    entities = words[spec.filler_words : spec.filler_words + spec.entities]
    values = np.array(words[spec.filler_words + spec.entities :]).reshape(spec.attributes, spec.values_per_attribute)
    attributes = [ATTRIBUTE_NAMES[i] if i < len(ATTRIBUTE_NAMES) else f"trait{i}" for i in range(spec.attributes)]
    table = rng.integers(spec.values_per_attribute, size=(spec.entities, spec.attributes))
    return filler, entities, attributes, values, table


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0  # searchsorted(rng.random()) never runs past the end
    return cdf


def _invented_words(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct pronounceable words of 2-3 syllables ("zorvak"), none an English function word."""
    words: dict[str, None] = {}  # insertion-ordered set: the output is deterministic
    while len(words) < count:
        batch = 2 * (count - len(words)) + 16
        syllables = rng.integers(2, 4, size=batch)
        onsets = rng.integers(len(_ONSETS), size=(batch, 3))
        vowels = rng.integers(len(_VOWELS), size=(batch, 3))
        codas = rng.integers(len(_CODAS), size=batch)
        for n, on, vo, co in zip(syllables.tolist(), onsets.tolist(), vowels.tolist(), codas.tolist()):
            word = "".join(_ONSETS[on[k]] + _VOWELS[vo[k]] for k in range(n)) + _CODAS[co]
            words.setdefault(word)
            if len(words) == count:
                break
    return list(words)
