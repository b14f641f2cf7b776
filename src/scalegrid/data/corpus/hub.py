"""The hub, asked once and briefly: the commit a hub dataset is read at (resolved once when planned,
so trial ids notice new data), and whether a repository is readable here (`hub_access`).

`plan` must work offline and fail fast: every question to the hub is one request of at most
HUB_TIMEOUT_S (the hub client's own retries on an unreachable host took 49 s before a tokenizer
gave up); a gated or missing repository is one line that says how to plan without it
(`OFFLINE_FIX`).

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
HUB_TIMEOUT_S = 10.0  # one question to the hub, at most this long
READABLE, GATED, MISSING = "readable", "gated", "missing"
OFFLINE_FIX = ("to plan without the hub: give a local copy of a tokenizer of the same vocabulary "
               "(--set data.tokenizer.path=DIR, a directory written by save_pretrained) or, once it is in your "
               "Hugging Face cache, set HF_HUB_OFFLINE=1")


def hub_access(repo_id: str, repo_type: str = "model") -> str:
    """What the hub says of this repository for this user, in one request: READABLE, GATED,
    MISSING, or why it could not be asked (offline, no answer within HUB_TIMEOUT_S)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    try:
        answer = get_session().get(f"{endpoint}/api/{repo_type}s/{repo_id}/auth-check", headers=build_hf_headers(),
                                   timeout=HUB_TIMEOUT_S)
        hf_raise_for_status(answer)
        return READABLE
    except GatedRepoError:  # before RepositoryNotFoundError: it is one
        return GATED
    except RepositoryNotFoundError:
        return MISSING
    except Exception as err:  # noqa: BLE001 - no network, a timeout, a hub error: the cache may still have it
        return f"no answer from {endpoint} within {HUB_TIMEOUT_S:g} s ({type(err).__name__}: {first_line(err, 100)})"


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
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if spec.revision and _COMMIT.match(spec.revision):
        return spec.revision  # a commit is its own answer: no hub needed
    asked = spec.revision or "the default branch"
    try:
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(spec.hub, revision=spec.revision, timeout=HUB_TIMEOUT_S)
        return info.sha
    except RevisionNotFoundError:
        raise UserError(f"data.revision: {spec.revision!r} is not a branch, tag or commit of {spec.hub}; check it on the hub") from None
    except GatedRepoError:
        raise UserError(
            f"data.hub: {spec.hub} is a gated dataset you have no access to: accept its terms on the hub and log in "
            "(`hf auth login`); to plan without the hub, set data.revision to its full commit SHA, or use local copies "
            "of its files (source: files)"
        ) from None
    except RepositoryNotFoundError as err:  # also private repositories without a token
        raise UserError(
            f"data.hub: {spec.hub} is not a dataset the hub serves to you ({type(err).__name__}); "
            "check the id, or log in (`hf auth login`) for a private one"
        ) from None
    except Exception as err:  # noqa: BLE001 - offline mode, no network, a hub error: fall back to what is known
        offline = f"{type(err).__name__}: {first_line(err, 120)}"
    recorded = recorded_revision(spec, results)
    if recorded is not None:
        return recorded
    raise UserError(
        f"data.revision: cannot ask the hub which commit {asked} of {spec.hub} is ({offline}) and no earlier run "
        "recorded it; to plan without the hub, set data.revision to a full commit SHA, or plan once online "
        "(HF_HUB_OFFLINE=1 then uses the commit recorded)"
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
