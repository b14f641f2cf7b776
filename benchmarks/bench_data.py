"""Corpus preparation at scale: a generated 1 GB `.jsonl.gz` corpus through `scalegrid prepare`.

Prints, for the byte and a BPE tokenizer:
- `scalegrid prepare` end to end (streamed read, BPE training for bpe, tokenization in 2
  processes, the shuffled write): wall time, tokens/s and the peak RSS of its process tree (the
  sum over the driver and its tokenizer processes, sampled from /proc every 0.2 s);
- encoding alone on a subset of the documents held in memory: a plain single-process
  `tokenizer.encode_batch` loop against `encoded_batches` with 1 and 2 processes (goal: no slower
  than the loop with 1, >= 1.7x with 2; one Rust thread per process throughout);
- `plan` on the corpus once its cache exists (goal: < 2 s): `make_plan` in this process and the
  `scalegrid plan` command's wall time.

    python benchmarks/bench_data.py [--gb 1.0] [--subset-mb 48] [--work DIR] [--tokenizers byte bpe]

The corpus is generated under --work (default: a temporary directory) and reused if present;
nothing is committed. On a shared machine the figures move with the load: `uptime` is printed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one Rust thread per process: the processes are the parallelism
FILES = 8
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "qu", "ze", "pa", "do", "en", "ar", "is", "um"]


def generate(directory: Path, total_bytes: int) -> tuple[int, int]:
    """FILES .jsonl.gz files of Zipf-distributed invented words: (JSON bytes, gzip bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    done = directory / "done.json"
    if done.is_file():
        return tuple(json.loads(done.read_text()))
    rng = np.random.default_rng(0)
    words = np.array(["".join(rng.choice(SYLLABLES, size=rng.integers(1, 5))) for _ in range(50_000)])
    cdf = np.cumsum(1 / np.arange(1, len(words) + 1) ** 1.1)
    cdf /= cdf[-1]
    written = 0
    for part in range(FILES):
        with gzip.open(directory / f"part-{part:02d}.jsonl.gz", "wt", compresslevel=1) as out:
            part_bytes = 0
            while part_bytes < total_bytes // FILES:
                picks = words[np.searchsorted(cdf, rng.random(200 * 1000))].reshape(1000, 200)
                lines = "".join(json.dumps({"text": " ".join(row[: rng.integers(20, 200)])}) + "\n" for row in picks)
                out.write(lines)
                part_bytes += len(lines)
        written += part_bytes
    compressed = sum(p.stat().st_size for p in directory.glob("*.jsonl.gz"))
    done.write_text(json.dumps([written, compressed]))
    return written, compressed


class TreeRSS:
    """Peak resident memory of a process and its descendants, summed, sampled from /proc."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.peak_single, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            sizes = [_rss(p) for p in _tree(self.pid)]
            self.peak, self.peak_single = max(self.peak, sum(sizes)), max([self.peak_single, *sizes])
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_spec(work: Path, tokenizer: str, processes: int) -> Path:
    spec = {
        "name": f"bench-{tokenizer}", "trainer": "lm", "model": "llama-50k", "epochs": 1, "lr": 1e-3,
        "data": {"source": "files", "files": [str(work / "corpus" / "*.jsonl.gz")], "tokenizer": tokenizer,
                 "unique_tokens": 1 << 20, "tokenize_cpus": processes},
        "results": str(work / f"results-{tokenizer}"),
    }
    path = work / f"{tokenizer}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def timed_prepare(spec: Path) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "scalegrid.cli", "prepare", str(spec)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    rss = TreeRSS(child.pid)
    out, _ = child.communicate()
    rss.stop()
    if child.returncode:
        raise SystemExit(f"scalegrid prepare {spec} failed ({child.returncode}): {out}")
    return {"wall_s": time.perf_counter() - start, "peak_rss": rss.peak, "peak_single": rss.peak_single, "line": out.strip()}


def subset(spec_path: Path, megabytes: int) -> list[list[str]]:
    from scalegrid.spec import load_spec
    from scalegrid.data.corpus.sources import document_batches

    batches, size = [], 0
    for batch in document_batches(load_spec(spec_path).data):
        batches.append(batch)
        size += sum(len(d) for d in batch)
        if size >= megabytes << 20:
            break
    return batches


def encode_rates(tokenizer, batches: list[list[str]], repeats: int = 2) -> dict[str, tuple[float, float]]:
    """(tokens per wall second, tokens per CPU second of this process and its tokenizer processes):
    the plain loop, then encoded_batches with 1 and 2 processes (best of `repeats`). The CPU
    figure is what the wall figure would approach per core on an idle machine: on a shared,
    oversubscribed one, more processes do not get more cores."""
    import resource
    from scalegrid.data.corpus.encode import encoded_batches

    def loop():
        if tokenizer.kind == "byte":
            return sum(len(tokenizer.encode_documents(b)) for b in batches)
        return sum(len(e.ids) + 1 for b in batches for e in tokenizer.backend.encode_batch(b, add_special_tokens=False))

    def ours(processes):
        return lambda: sum(len(ids) for ids, _ in encoded_batches(tokenizer, batches, processes=processes, dtype=np.uint16))

    def cpu_seconds() -> float:
        here, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return here.ru_utime + here.ru_stime + children.ru_utime + children.ru_stime

    rates = {}
    for name, run in (("loop", loop), ("1 process", ours(1)), ("2 processes", ours(2))):
        best = (0.0, 0.0)
        for _ in range(repeats):
            start, cpu = time.perf_counter(), cpu_seconds()
            tokens = run()
            wall, used = time.perf_counter() - start, cpu_seconds() - cpu
            best = max(best, (tokens / wall, tokens / used))
        rates[name] = best
    return rates


def plan_times(spec: Path) -> tuple[float, float]:
    from scalegrid.orchestrator.planning.sweep_plan import make_plan

    times = []
    for _ in range(3):
        start = time.perf_counter()
        make_plan(spec)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scalegrid.cli", "plan", str(spec)], check=True, capture_output=True)
    return min(times), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size in GiB of JSON lines (before gzip)")
    parser.add_argument("--subset-mb", type=int, default=48, help="documents held in memory for the encoding rates")
    parser.add_argument("--work", help="where the corpus and caches go (default: a temporary directory)")
    parser.add_argument("--tokenizers", nargs="+", default=["byte", "bpe"])
    parser.add_argument("--reuse", action="store_true", help="keep the caches already under --work: rates and plan only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(args.work or tmp)
        start = time.perf_counter()
        raw, compressed = generate(work / "corpus", int(args.gb * (1 << 30)))
        print(f"corpus: {raw / 2**30:.2f} GiB of JSON lines in {FILES} .jsonl.gz files of {compressed / 2**30:.2f} GiB "
              f"({time.perf_counter() - start:.0f} s to generate or find)")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs")
        for kind in args.tokenizers:
            spec = write_spec(work, kind, processes=2)
            print(f"\n{kind}:")
            if not args.reuse:
                shutil.rmtree(work / f"results-{kind}", ignore_errors=True)  # a cold build every time
                result = timed_prepare(spec)
                meta = _meta(work / f"results-{kind}")
                tokens = meta["train_tokens"] + meta["val_tokens"]
                print(f"  scalegrid prepare (2 processes) {result['wall_s']:.0f} s, {tokens:,} tokens "
                      f"({tokens / result['wall_s']:,.0f} tokens/s end to end), peak RSS {result['peak_rss'] / 2**20:,.0f} MiB "
                      f"for the process tree ({result['peak_single'] / 2**20:,.0f} MiB the largest process); load "
                      f"{os.getloadavg()[0]:.1f}")
                print(f"  {result['line']}")
            from scalegrid.data.tokenizers import load_saved

            tokenizer = load_saved(kind, _cache_dir(work / f"results-{kind}") / "tokenizer")
            batches = subset(spec, args.subset_mb)
            rates = encode_rates(tokenizer, batches)
            loop, loop_cpu = rates["loop"]
            print(f"  encoding {sum(map(len, batches)):,} documents ({args.subset_mb} MiB) held in memory, tokens per wall "
                  "second (per CPU second): " + ", ".join(
                      f"{name} {wall:,.0f} ({wall / loop:.2f}x) ({cpu:,.0f}, {cpu / loop_cpu:.2f}x)" for name, (wall, cpu) in rates.items()
                  ) + f"; load {os.getloadavg()[0]:.1f}")
            in_process, command = plan_times(spec)
            print(f"  plan with the cache built: make_plan {in_process:.2f} s, `scalegrid plan` {command:.2f} s wall")
        print(f"\nload at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


def _cache_dir(results: Path) -> Path:
    (key,) = os.listdir(results / "cache" / "tokens")
    return results / "cache" / "tokens" / key


def _meta(results: Path) -> dict:
    return json.loads((_cache_dir(results) / "meta.json").read_text())


if __name__ == "__main__":
    main()
