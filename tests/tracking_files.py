"""Readers of what trackers write offline, for the tests: W&B's run files and TensorBoard's event files.

Both are record logs of protocol buffers, read here with the packages' own message types:
- a W&B run file (`wandb/offline-run-*/run-*.wandb`) is a 7-byte header (":W&B", magic 0xBEE1,
  version) and then LevelDB's log format: 32 KiB blocks of chunks, each a 7-byte header (CRC,
  length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes; a record is one or more chunks.
- a TensorBoard event file is records of (length u64, CRC u32, an `Event`, CRC u32).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

W_AND_B_BLOCK = 32768


@dataclass
class WandbRun:
    name: str
    group: str
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # each logged row, its step under "_step"


def _wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path}: not a W&B run file"
    pos, record = 7, b""
    while pos + 7 <= len(data):
        left = W_AND_B_BLOCK - pos % W_AND_B_BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # the block's zero padding
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            message = wandb_internal_pb2.Record()
            message.ParseFromString(record)
            yield message


def wandb_runs(directory: Path) -> list[WandbRun]:
    """Every offline run under `directory`: its name, group, config and logged history."""
    runs = []
    for path in sorted(directory.rglob("offline-run-*/run-*.wandb")):
        run = WandbRun("", "")
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.name, run.group = record.run.display_name, record.run.run_group
                run.config |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
            elif kind == "config":
                run.config |= {i.key: json.loads(i.value_json) for i in record.config.update}
            elif kind == "history":
                run.history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        runs.append(run)
    return runs


def _tensorboard_events(path: Path):
    from tensorboardX.proto import event_pb2

    data, pos = path.read_bytes(), 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
        yield event


def tensorboard_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> (step, value) of every scalar in one event file."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in _tensorboard_events(path):
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@dataclass
class HParams:
    params: dict  # name -> value, as TensorBoard's HParams tab shows them
    metrics: list[str]  # the scalar tags it shows as the trial's metrics


def tensorboard_hparams(path: Path) -> HParams | None:
    """What TensorBoard's HParams plugin reads from one event file (its experiment and session start)."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    found = HParams({}, [])
    for event in _tensorboard_events(path):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name != "hparams":
                continue
            data = HParamsPluginData()
            data.ParseFromString(value.metadata.plugin_data.content)
            kind = data.WhichOneof("data")
            if kind == "experiment":
                found.metrics += [m.name.tag for m in data.experiment.metric_infos]
            elif kind == "session_start_info":
                for name, v in data.session_start_info.hparams.items():
                    found.params[name] = getattr(v, v.WhichOneof("kind"))
    return found if found.params else None
