"""Corpora into token caches: read by streaming, tokenized across processes, written as they come.

`sources.py` (files, hub, synthetic, token arrays as streams of batches), `fingerprint.py` (a
file's SHA-256 without re-hashing it on every plan), `hub.py` (the commit a hub dataset is read
at), `encode.py` (tokenizer processes), `build.py` (the split and order recipe, written into
`train.bin` / `val.bin`), `cache.py` (where a built cache lives and how nodes read it).
`data/identity.py` ties them together: `describe` and `prepare`.
"""
