"""Corpora to token arrays: tokenized once per identity, cached, shared by every trial.

The orchestrator calls, in this order:

    identity = describe(spec.data, results)      # cheap: no tokenizing, no re-hashing of known files
    # ... Trial(config=TrialConfig(data=identity.config, ...), data_key=identity.key)
    identity, path = prepare(spec.data, results) # `scalegrid prepare` / `run`: builds the cache once

and the `lm` trainer reads `TokenCache(trial.results).open(trial.data_key)`.

**Identity.** `describe` returns the typed identity (`trial.DataConfig`) of what determines the
token arrays: a SHA-256 of each file's bytes, not its path (found through a cheap fingerprint
once the cache recorded it: `corpus/fingerprint.py`); the synthetic spec and generator version;
the hub id, config, split, data files and the commit they are read at (`corpus/hub.py`); the
tokenizer's kind, size and content hash; the validation settings, the training order
(`shuffle_seed`) and the version of the recipe (`corpus/build.py`). `key`, a short hash of it,
names the token cache. The identity is `TrialConfig.data`, so it is part of every trial id.

How the corpus is read, split, ordered and written is in `corpus/` (`sources.py`, `build.py`,
`cache.py`).
"""

from __future__ import annotations

from pathlib import Path

from scalegrid.data import gaussian, synthetic
from scalegrid.grid import content_hash
from scalegrid.spec import DataSpec
from scalegrid.storage import ResultsLayout
from scalegrid.data import fingerprint
from scalegrid.data.corpus import hub
from scalegrid.data.corpus.build import DATA_VERSION, check_covers, split_documents
from scalegrid.data.corpus.cache import TokenCache, default_processes, open_tokens
from scalegrid.data.corpus.sources import check_token_file, document_batches, resolve_files, token_dtype
from scalegrid.data.tokenizers import tokenizer_identity
from scalegrid.trial import DataIdentity, FileId, FilesData, GaussianData, HubData, SyntheticData, TokensData

__all__ = [
    "DATA_VERSION", "TokenCache", "describe", "load_documents", "open_tokens", "prepare", "split_documents", "token_dtype",
]


def describe(spec: DataSpec, results: ResultsLayout | None = None) -> DataIdentity:
    """The data's identity (part of every trial id) and its token cache's key; tokenizes nothing.
    `results` holds what earlier builds recorded (file hashes, hub commits)."""
    if spec.source == "gaussian":
        return _identity(GaussianData(generator=gaussian.GENERATOR_VERSION, **spec.gaussian.model_dump()))
    if spec.source == "tokens":
        files = resolve_files(spec)
        for file in files:
            check_token_file(file, spec.vocab_size)
        return _identity(TokensData(
            files=_file_ids(files, results), vocab_size=spec.vocab_size, validation=spec.validation, recipe=DATA_VERSION,
        ))
    tokenizer = tokenizer_identity(spec.tokenizer)
    shared = {
        "tokenizer": tokenizer, "vocab_size": tokenizer["vocab_size"], "validation": spec.validation,
        "recipe": DATA_VERSION, "shuffle_seed": spec.shuffle_seed,
    }
    if spec.source == "synthetic":
        return _identity(SyntheticData(generator=synthetic.GENERATOR_VERSION, synthetic=spec.synthetic, **shared))
    if spec.source == "files":
        return _identity(FilesData(files=_file_ids(resolve_files(spec), results), text_field=spec.text_field, **shared))
    return _identity(HubData(
        hub=spec.hub, hub_config=spec.hub_config, hub_split=spec.hub_split, hub_files=tuple(spec.hub_files),
        revision=hub.resolve_revision(spec, results), text_field=spec.text_field, **shared,
    ))


def _file_ids(files, results: ResultsLayout | None) -> list[FileId]:
    return [FileId(sha256=fingerprint.content_sha256(f.path, results), format=f.format) for f in files]


def _identity(config) -> DataIdentity:
    return DataIdentity(key=content_hash(DataIdentity.fields_of(config)), config=config)


def prepare(spec: DataSpec, results: ResultsLayout, *, processes: int | None = None) -> tuple[DataIdentity, Path]:
    """describe, then the token cache of that identity covering every budget: found, grown or
    built (a too-short or empty corpus is a UserError and publishes nothing)."""
    identity = describe(spec, results)
    cache, need = TokenCache(results), spec.max_unique_tokens
    why = cache.problem(identity.key)
    if why:
        cache.set_aside(identity.key, why)
    meta = cache.meta(identity.key)
    if meta is None or (meta["train_tokens"] < need and not meta.get("complete", True)):
        revision = identity.config.revision if spec.source == "hub" else None
        cache.build(spec, identity, need_tokens=need, processes=processes or default_processes(spec),
                    revision=revision, grow=meta is not None)
    else:
        check_covers(spec, meta)  # a complete corpus shorter than a budget
    _record_sources(spec, results, identity)
    return identity, cache.load(identity.key, need)


def _record_sources(spec: DataSpec, results: ResultsLayout, identity: DataIdentity) -> None:
    """What lets the next `plan` skip the hub and the hashing: the commit read, each file's hash."""
    if spec.source == "hub":
        hub.record_revision(spec, results, identity.config.revision)
    elif spec.source in ("files", "tokens"):
        for file, file_id in zip(resolve_files(spec), identity.config.files):
            fingerprint.record(results, file.path, file_id.sha256)


def load_documents(spec: DataSpec, revision: str | None = None) -> list[str]:
    """Every non-empty document of a small corpus, in stream order (tests, probes; `prepare`
    streams instead)."""
    return [document for batch in document_batches(spec, revision) for document in batch]
