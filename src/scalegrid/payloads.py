"""Free-form payloads: what is read from or written to YAML, JSON and torch files before (or
instead of being) typed. Everything else in scalegrid is typed; these three are named here once.

    YamlMapping   a mapping as a spec writes it (a selector, explicit model sizes), typed by `spec.resolve`
    JsonObject    a JSON object: an identity's hashed fields, fits.json's numbers
    StateDict     what a checkpoint holds: torch state dicts, RNG states, curve rows (`trainers/checkpoint.py`)
"""

from typing import Any

YamlMapping = dict[str, Any]
JsonObject = dict[str, Any]
StateDict = dict[str, Any]
