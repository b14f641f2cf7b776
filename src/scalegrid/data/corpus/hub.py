"""The commit a hub dataset is read at: resolved once when planned, so trial ids notice new data.

A hub source's identity holds the commit SHA of the dataset repository, not a branch name:
`resolve_revision` asks the hub API (`huggingface_hub`, `HF_ENDPOINT` honoured) which commit
`data.revision` (default: the main branch) is now. When the cache of that commit is built, the
answer is recorded under `RESULTS/cache/hub/<source>.json`; offline (`HF_HUB_OFFLINE=1`, or
the hub unreachable) that record is used. A full 40-hex commit needs no hub at all. With none of
these the source is refused, since a trial id that cannot tell which data it saw is no id.
"""

from __future__ import annotations

import json
import os
import re

from scalegrid.errors import UserError
from scalegrid.grid import content_hash
from scalegrid.spec import DataSpec
from scalegrid.storage import ResultsLayout, first_line

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def source_name(spec: DataSpec) -> str:
    """What the record of a resolved revision is filed under: the source as the spec asked for it."""
    asked = {"hub": spec.hub, "config": spec.hub_config, "split": spec.hub_split, "files": spec.hub_files, "revision": spec.revision}
    return content_hash(asked)


def resolve_revision(spec: DataSpec, results: ResultsLayout | None) -> str:
    """The commit SHA that `spec.revision` (None: the default branch) names now."""
    if os.path.isdir(os.path.expanduser(spec.hub)):
        raise UserError(
            f"data.hub: {spec.hub} is a local directory; use source: files with files: [{spec.hub}/*.jsonl] "
            "(or its .parquet / .txt files)"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    asked = spec.revision or "the default branch"
    try:
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(spec.hub, revision=spec.revision, timeout=30)
        return info.sha
    except RevisionNotFoundError:
        raise UserError(f"data.revision: {spec.revision!r} is not a branch, tag or commit of {spec.hub}; check it on the hub") from None
    except RepositoryNotFoundError as err:  # also gated and private repositories without a token
        raise UserError(
            f"data.hub: {spec.hub} is not a dataset the hub serves to you ({type(err).__name__}); "
            "check the id, or log in (`hf auth login`) for a gated one"
        ) from None
    except Exception as err:  # noqa: BLE001 - offline mode, no network, a hub error: fall back to what is known
        offline = f"{type(err).__name__}: {first_line(err, 120)}"
    if spec.revision and _COMMIT.match(spec.revision):
        return spec.revision
    recorded = recorded_revision(spec, results)
    if recorded is not None:
        return recorded
    raise UserError(
        f"data.revision: cannot ask the hub which commit {asked} of {spec.hub} is ({offline}) and no earlier run "
        "recorded it; set data.revision to a full commit SHA, or plan once online"
    )


def recorded_revision(spec: DataSpec, results: ResultsLayout | None) -> str | None:
    if results is None or not results.is_file(*results.hub_revision(source_name(spec))):
        return None
    return json.loads(results.read_bytes(*results.hub_revision(source_name(spec))))["revision"]


def record_revision(spec: DataSpec, results: ResultsLayout, revision: str) -> None:
    """Remember the commit read, for the next plan without a hub (and for people: the record is readable)."""
    parts = results.hub_revision(source_name(spec))
    entry = {"hub": spec.hub, "config": spec.hub_config, "split": spec.hub_split, "files": spec.hub_files,
             "asked": spec.revision, "revision": revision}
    results.write_bytes(parts, (json.dumps(entry, indent=2, sort_keys=True) + "\n").encode())
