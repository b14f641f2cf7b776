"""Downstream evaluation throughput: scalegrid's path against lm-evaluation-harness's own HFLM.

    python benchmarks/bench_eval.py                        # llama-1m, all 1,800 questions of synthetic_facts, CPU
    python benchmarks/bench_eval.py --model llama-150m --seq-len 1024 --batch-size 256   # on a GPU (bf16)

Three models of one shape are saved as a sweep saves them (safetensors and the byte tokenizer under
RESULTS/models/<id>/; random weights: throughput does not depend on them). On the same task
(`synthetic_facts`: four-way questions, 4 loglikelihood requests each) and batch size it times,
interleaved and `--repeats` times each, the task's loading and scoring (the model loaded first, as
both do once per model):

    harness   HFLM(pretrained=<model dir>) through lm_eval's `evaluate`: the harness by itself
    single    scalegrid's path for a single model or a student (`trainers/harness.evaluate_models`)
    ensemble  scalegrid's `EnsembleLM` over the three models (combine: probs)

and prints requests per second of the fastest run (on a shared machine the other runs measure the
load; the median is printed beside it), single / harness (target >= 0.9) and ensemble / single
time (target <= 3.3: three forward passes and the averaging). Prints the device and load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def saved_models(root: Path, model: str, count: int, seq_len: int):
    """`count` Trials of `model` on a synthetic corpus, each with random weights saved where a sweep saves them."""
    from scalegrid.data.identity import describe
    from scalegrid.data.tokenizers import ByteTokenizer, hf_files
    from scalegrid.shapes import PRESETS
    from scalegrid.spec import DataSpec, TrainSpec
    from scalegrid.storage import layout
    from scalegrid.trainers.model import build_model
    from scalegrid.trial import Trial, TrialConfig

    results = layout(root)
    data = describe(DataSpec(source="synthetic", synthetic={"documents": 6000, "entities": 300, "seed": 0}, unique_tokens=[8192]), results)
    trials = []
    for m in range(count):
        config = TrialConfig(trainer="lm", model=PRESETS[model](), data=data.config, unique_tokens=8192, epochs=1, lr=3e-3,
                             weight_decay=0.1, seed=0, member=m, train=TrainSpec(batch_size=8, seq_len=seq_len))
        trial = Trial(trial_id=f"bench{m}", sweep="bench", model_label=model, config=config, results=results, data_key=data.key)
        directory = Path(results.root, *results.model_dir(trial.trial_id))
        build_model(PRESETS[model](), vocab_size=257, seq_len=seq_len, seed=m).save_pretrained(directory)
        for name, content in hf_files(ByteTokenizer()).items():
            (directory / name).write_bytes(content)
        trials.append(trial)
    return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llama-1m")
    parser.add_argument("--limit", type=int, default=1800, help="questions of synthetic_facts (4 requests each; it has 1,800)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=64, help="the models' context")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (an evaluation's Ray task of 1 CPU runs with 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    from scalegrid.data.eval_tasks import FACTS_TASK, TaskRef
    from scalegrid.trainers import harness
    from scalegrid.trainers.devices import device_name, trial_device
    from scalegrid.trainers.weights import local_model_dir

    device = trial_device()
    facts = TaskRef(FACTS_TASK, "1", "multiple_choice")
    with tempfile.TemporaryDirectory() as tmp:
        trials = saved_models(Path(tmp), args.model, 3, args.seq_len)
        directory = str(local_model_dir(trials[0].results, trials[0].trial_id))
        theirs = HFLM(pretrained=directory, tokenizer=directory, device=str(device), batch_size=args.batch_size, dtype="float32",
                      mixed_precision_dtype=torch.bfloat16 if device.type == "cuda" else None)
        harness._quiet()

        def run_harness() -> float:  # what scalegrid's time counts too: the task written and loaded, then scored
            start = time.perf_counter()
            loaded = harness._task_manager(needs_defaults=False).load([harness.task_spec(facts, trials[0], Path(tmp) / "task")])
            evaluate(lm=theirs, task_dict=loaded, limit=args.limit, bootstrap_iters=harness.BOOTSTRAP_ITERS, log_samples=False,
                     verbosity="ERROR")
            return time.perf_counter() - start

        def run_ours(members) -> float:
            (scores,) = harness.evaluate_models(members, combine="probs", tasks=[facts], num_fewshot=0, limit=args.limit,
                                                batch_size=args.batch_size)
            assert scores.error is None, scores.error
            return scores.seconds

        times: dict[str, list[float]] = {"harness": [], "single": [], "ensemble": []}
        run_harness(), run_ours(trials[:1])  # warm-up: first calls build caches
        for _ in range(args.repeats):
            times["harness"].append(run_harness())
            times["single"].append(run_ours(trials[:1]))
            times["ensemble"].append(run_ours(trials))
    requests = 4 * args.limit
    fastest = {k: min(v) for k, v in times.items()}
    print(f"{args.model} on {device_name(device)} ({args.threads} torch threads), synthetic_facts: {args.limit} questions "
          f"({requests} requests), batch {args.batch_size}, context {args.seq_len}; load average {os.getloadavg()[0]:.2f}")
    for name, seconds in fastest.items():
        print(f"  {name:9s} {seconds:7.3f} s  {requests / seconds:9.0f} requests/s   (median {statistics.median(times[name]):.3f} s; "
              f"runs: {', '.join(f'{t:.3f}' for t in times[name])})")
    single_vs_harness = fastest["harness"] / fastest["single"]
    ensemble_vs_single = fastest["ensemble"] / fastest["single"]
    print(f"single through scalegrid / the harness's HFLM: {single_vs_harness:.2f}x throughput (target >= 0.9)")
    print(f"ensemble of 3 / one member: {ensemble_vs_single:.2f}x time (target <= 3.3)")
    return 0 if single_vs_harness >= 0.9 and ensemble_vs_single <= 3.3 else 1


if __name__ == "__main__":
    sys.exit(main())
