"""What `run` sets aside before it writes, so that what it stood for is made again in this run.

`plan` only reads (it warns about what it finds damaged); `run` is the one place that heals the
store before writing: every damaged row file of runs/ and ensembles/ (`store/validation.py`), every
saved model a stage needs that does not pass `storage/artifacts.model_problem`, every teacher corpus
that does not pass `teacher_corpus_problem`. Each is set aside with a warning naming it; its trial
then counts as not done (retrained), its model as missing (its member retrained), its corpus as not
made (sampled again). Token caches heal where they are opened (`data/identity.prepare`, and a
trial whose cache vanished rebuilds it). On an object store a model is checked where it is loaded
(the stage fails and the next run retrains the member): its files are not on this machine.
"""

from __future__ import annotations

import sys

from scalegrid import store
from scalegrid.orchestrator.planning.sweep_plan import SweepPlan
from scalegrid.storage import CACHE_MARKER, MODEL_MARKER
from scalegrid.storage.artifacts import model_problem, teacher_corpus_problem
from scalegrid.trial import Status


def heal(plan: SweepPlan) -> None:
    """Set aside what the store holds damaged (see the module docstring); the plan reads the
    models' markers when it is asked what is pending, so no refresh is needed for them."""
    results = plan.results
    for table, damaged in plan.snapshot.damaged.items():
        store.set_aside_damaged(results, table, damaged)
    for trial_id in sorted(plan.graph.needs_weights):
        local = results.local(*results.model_dir(trial_id))
        if local is None or plan.snapshot.status.get(trial_id) != Status.COMPLETED.value or not results.has_model(trial_id):
            continue
        why = model_problem(local)
        if why:
            aside = results.set_aside_dir(results.model_dir(trial_id), MODEL_MARKER)
            _warn(results.shown(*results.model_dir(trial_id)), why, aside, "its trial is trained again")
    for corpus in plan.graph.corpora:
        local = results.local(*results.teacher_corpus(corpus.corpus_id))
        if local is None or not results.is_file(*results.teacher_corpus(corpus.corpus_id), CACHE_MARKER):
            continue
        why = teacher_corpus_problem(local, CACHE_MARKER)
        if why:
            aside = results.set_aside_dir(results.teacher_corpus(corpus.corpus_id), CACHE_MARKER)
            _warn(results.shown(*results.teacher_corpus(corpus.corpus_id)), why, aside, "it is sampled again")


def _warn(shown: str, why: str, aside: str, redo: str) -> None:
    print(f"scalegrid: warning: {shown} is damaged ({why}); set aside as {aside}, {redo}", file=sys.stderr)
