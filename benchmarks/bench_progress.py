"""How true the live ETA is: `scalegrid run` of a ~2-minute sweep under a pseudo-terminal, recorded.

The sweep mixes three model sizes, two budgets and three epoch counts (18 lm trials of 2 s to 40 s
on two slots, longest first), so the ETA has to weigh unequal trials of unequal speeds and the
time a trial costs beyond training. The session is recorded as it is drawn (asciicast v2: every
chunk the terminal received, timed), then read back: the sweep runs from its first progress line
to the line that counts its last trial done; at 25%, 50% and 75% of that time the ETA on screen
is compared with the time that was really left. Goal: within 30% at each.

    python benchmarks/bench_progress.py [--record progress.cast] [--scale 1.0]

`--scale` multiplies the budgets (the sweep's length); the recording replays with asciinema
(`asciinema play progress.cast`). Print `uptime` beside the figures: on a loaded machine trials
slow down while they run, which no ETA foresees.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SUMMARY = re.compile(r"(\d+)/(\d+) done, [^\r\n]*?elapsed (\w+?)(?:, ETA (?:at least )?(\w+))?(?=[;\s]|$)")
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def spec_for(results: Path, scale: float) -> dict:
    budget = lambda tokens: int(tokens * scale) // 64 * 64  # noqa: E731 - whole sequences of 64
    return {
        "name": "bench-progress", "trainer": "lm", "model": ["llama-50k", "llama-200k", "llama-1m"],
        "data": {"source": "synthetic", "synthetic": {"documents": 6000, "entities": 300, "seed": 0},
                 "unique_tokens": [budget(8192), budget(32768)], "validation": {"fraction": 0.05, "max_tokens": 8192}},
        "epochs": [1, 2, 4], "lr": 3e-3,
        "train": {"batch_size": 16, "seq_len": 64, "eval_every": 16},
        "keep_weights": False, "results": str(results),
    }


def seconds(text: str) -> float:
    """1h02m, 1m08s, 8s -> seconds."""
    hours, minutes, secs = (re.search(rf"(\d+){unit}", text) for unit in ("h", "m(?!s)", "s"))
    return sum(float(m.group(1)) * f for m, f in ((hours, 3600), (minutes, 60), (secs, 1)) if m)


def record(command: list[str], cast: Path) -> list[tuple[float, str]]:
    """Run `command` on a pty of 200 columns; every chunk it draws, with its time since the start."""
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env, close_fds=True)
    os.close(child_fd)
    chunks: list[tuple[float, str]] = []
    while True:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append((time.monotonic() - start, data.decode(errors="replace")))
        elif process.poll() is not None:
            break
    process.wait()
    with cast.open("w") as out:  # asciicast v2: a header, then [time, "o", text] per chunk
        out.write(json.dumps({"version": 2, "width": 200, "height": 50, "timestamp": int(time.time()),
                              "command": " ".join(command)}) + "\n")
        for t, text in chunks:
            out.write(json.dumps([round(t, 4), "o", text]) + "\n")
    if process.returncode != 0:
        sys.exit(f"the sweep failed (exit {process.returncode}); its screen is in {cast}")
    return chunks


def shown_etas(chunks: list[tuple[float, str]]) -> tuple[list[tuple[float, float]], float, float]:
    """(time, ETA shown) of every summary line drawn, the time of the first one and the time the
    last trial was counted done."""
    etas, first, end, pending = [], None, None, ""
    for t, text in chunks:
        pending += CSI.sub("", text)
        *lines, pending = re.split(r"[\r\n]", pending)
        for line in lines:
            found = SUMMARY.search(line)
            if not found:
                continue
            first = t if first is None else first
            done, total, _, eta = found.groups()
            if eta:
                etas.append((t, seconds(eta)))
            if done == total and end is None:
                end = t
    if first is None or end is None:
        sys.exit("no progress lines (or no end) in the recording")
    return etas, first, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=Path("progress.cast"), help="where the session is written")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the budgets (the sweep's length)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench-progress.yaml"
        spec.write_text(yaml.safe_dump(spec_for(Path(tmp) / "results", args.scale), sort_keys=False))
        subprocess.run([sys.executable, "-m", "scalegrid.cli", "prepare", str(spec)], check=True, capture_output=True)
        chunks = record([sys.executable, "-m", "scalegrid.cli", "run", str(spec), "--no-report"], args.record)
    etas, first, end = shown_etas(chunks)
    print(f"recorded {args.record} ({len(chunks)} chunks); the sweep ran {end - first:.1f} s "
          f"(from its first progress line to its last trial done); load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"{'at':>4} {'time':>7} {'ETA shown':>10} {'really left':>12} {'error':>7}")
    worst = 0.0
    for share in (0.25, 0.5, 0.75):
        at = first + share * (end - first)
        shown = [eta for t, eta in etas if t <= at]
        if not shown:
            print(f"{share:>4.0%} {at - first:>6.1f}s {'none':>10}")
            worst = float("inf")
            continue
        left = end - at
        error = (shown[-1] - left) / left
        worst = max(worst, abs(error))
        print(f"{share:>4.0%} {at - first:>6.1f}s {shown[-1]:>9.0f}s {left:>11.1f}s {error:>+7.0%}")
    print(f"worst error {worst:.0%}: {'within' if worst <= 0.30 else 'NOT within'} the 30% goal")


if __name__ == "__main__":
    main()
