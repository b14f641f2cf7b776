"""The spec's `data:` section: where the corpus comes from, its tokenizer, its validation split,
the token budgets (an axis) and the order an epoch visits them (an axis)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from scalegrid.spec.strict import MAX_TOKENS, Fraction, Seed, Strict, as_axis, hashed_unless_default


class SyntheticCorpusSpec(Strict):
    """The synthetic corpus of `data/synthetic.py`: entity-attribute facts in templated sentences."""

    documents: int = Field(4000, ge=10, le=10_000_000)
    entities: int = Field(400, ge=1, le=1_000_000)
    attributes: int = Field(6, ge=1, le=1000)
    values_per_attribute: int = Field(50, ge=2, le=100_000)
    filler_words: int = Field(1000, ge=10, le=1_000_000)
    zipf_exponent: float = Field(1.1, gt=0, le=10)
    facts_per_document: int = Field(6, ge=1, le=1000)
    redundancy: Fraction = 0.0  # fraction of documents that repeat/paraphrase another
    seed: Seed = 0


class GaussianDataSpec(Strict):
    """Linear-regression data: x ~ N(0, H), H_ii ~ (i + spectrum_offset)^-spectrum_decay, y = <w*, x> + noise.

    w*_i ~ (i + spectrum_offset)^-target_decay, scaled so the signal <w*, x> has unit variance.
    The three fields after `seed` came later: at their defaults a trial keeps the id it had.
    """

    spectrum_decay: float = Field(1.5, gt=0, le=100)
    target_decay: float = Field(1.0, ge=0, le=100)  # w*_i ~ (i + offset)^-target_decay (source condition)
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed = 0
    spectrum_offset: float = hashed_unless_default(0.0, ge=0, le=1e6)  # i + offset, i = 1..d: flattens the top of the spectrum
    spectrum_scale: Literal["top", "trace"] = hashed_unless_default("top")  # H scaled so its top eigenvalue, or its trace, is 1
    data_per_seed: bool = hashed_unless_default(False)  # each trial seed draws its own samples (else: only its own order)


class TokenizerSpec(Strict):
    kind: Literal["byte", "bpe", "hf"] = "byte"
    vocab_size: int | None = Field(None, ge=257, le=1 << 20)  # bpe only: 256 bytes + EOS at least
    path: str | None = None  # hf only: a local directory or a hub id

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "hf" and not self.path:
            raise ValueError("a tokenizer of kind hf needs `path` (a local directory or hub id)")
        if self.kind != "hf" and self.path:
            raise ValueError(f"`path` is only for kind hf, not {self.kind}")
        if self.kind != "bpe" and self.vocab_size is not None:
            raise ValueError(f"`vocab_size` is only for kind bpe, not {self.kind}")
        return self


class ValidationSpec(Strict):
    fraction: float = Field(0.05, gt=0, lt=1)  # of documents held out, chosen by a seeded hash
    max_tokens: int = Field(32768, ge=64, le=MAX_TOKENS)  # validation tokens used for val_loss


UniqueTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]  # a token budget: an axis
DataOrder = Literal["shuffled", "sequential"]  # the order an epoch visits the training sequences in: an axis
SHUFFLE_SEED = 0x5CA1E7  # the default order of a finite corpus' training documents (data/corpus)


class DataSpec(Strict):
    """The corpus: documents (`synthetic`, `files`, `hub`) tokenized by `tokenizer`, token arrays
    (`tokens`), or generated regression data (`gaussian`). Read by `data/corpus/`."""

    source: Literal["synthetic", "files", "hub", "tokens", "gaussian"] = "synthetic"
    files: list[str] = []  # files and tokens: paths and globs
    format: Literal["auto", "text", "json", "parquet", "npy", "bin", "arrow"] = "auto"
    text_field: str = "text"
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_files: list[str] = []  # data files inside the hub repository (globs): stream a subset of it
    revision: str | None = None  # hub: a branch, tag or commit; resolved to its commit when planned
    # The training documents' order: a seed shuffles the whole corpus (every document is read
    # once); null keeps the stream's order and reads only as far as the largest budget needs.
    # Default: SHUFFLE_SEED for synthetic and files, null for hub (see the before-validator).
    shuffle_seed: Seed | None = None
    tokenize_cpus: int | None = Field(None, ge=1, le=1024)  # tokenizer processes; on a cluster, the CPUs of its Ray task
    vocab_size: int | None = Field(None, ge=2, le=2**32)  # tokens: the vocabulary the ids come from (uint32 ids)
    eos_id: int | None = Field(None, ge=0, le=2**32 - 1)  # tokens: the end-of-document id (teacher samples start from it)
    synthetic: SyntheticCorpusSpec = SyntheticCorpusSpec()
    gaussian: GaussianDataSpec = GaussianDataSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    unique_tokens: list[UniqueTokens]
    validation: ValidationSpec = ValidationSpec()
    # The order an epoch visits the training sequences in: reshuffled every epoch, or the corpus'
    # own order. An axis (the trial's `data_order`); not part of the corpus' identity.
    order: list[DataOrder] = ["shuffled"]

    @model_validator(mode="before")
    @classmethod
    def _default_order(cls, value: Any):
        if isinstance(value, dict) and "shuffle_seed" not in value:
            finite = value.get("source", "synthetic") in ("synthetic", "files")
            value = {**value, "shuffle_seed": SHUFFLE_SEED if finite else None}
        return value

    @field_validator("tokenizer", mode="before")
    @classmethod
    def _tokenizer_shorthand(cls, value: Any):
        if isinstance(value, str):  # `tokenizer: byte` / `bpe` / a path
            return {"kind": value} if value in ("byte", "bpe") else {"kind": "hf", "path": value}
        return value

    @field_validator("unique_tokens", "order", mode="before")
    @classmethod
    def _axis(cls, value: Any):
        return as_axis(value)

    @model_validator(mode="after")
    def _check_source(self):
        if self.source in ("files", "tokens") and not self.files:
            raise ValueError(f"source `{self.source}` needs `files: [path, ...]`")
        if self.source == "hub" and not self.hub:
            raise ValueError("source `hub` needs `hub: <dataset id>`")
        if self.source in ("gaussian", "tokens") and self.tokenizer != TokenizerSpec():
            raise ValueError(f"source `{self.source}` takes no tokenizer" + (" (its ids are already tokens)" if self.source == "tokens" else ""))
        if (self.source == "tokens") != (self.vocab_size is not None):
            raise ValueError("source `tokens` needs `vocab_size` (of the tokenizer that made the ids)"
                             if self.source == "tokens" else "`vocab_size` is for source tokens; a tokenizer's goes under `tokenizer:`")
        if self.eos_id is not None and (self.source != "tokens" or self.eos_id >= self.vocab_size):
            raise ValueError("`eos_id` is for source tokens, below its vocab_size")
        if self.source == "tokens" and self.shuffle_seed is not None:
            raise ValueError("source `tokens` is read in its order: leave out `shuffle_seed`")
        if self.shuffle_seed is None and self.tokenizer.kind == "bpe":
            raise ValueError(
                "a bpe tokenizer is trained on the whole training corpus, which shuffle_seed: null does not read; "
                "set shuffle_seed or use an hf tokenizer"
            )
        if self.hub_files and self.source != "hub":
            raise ValueError("`hub_files` is for source hub; local files go under `files:`")
        return self

    @property
    def max_unique_tokens(self) -> int:
        return max(self.unique_tokens)
