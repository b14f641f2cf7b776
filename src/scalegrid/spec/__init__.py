"""The sweep spec: YAML or a dict -> validated -> resolved once (see `sweep.py`)."""

from scalegrid.spec.sweep import *  # noqa: F401,F403 - the front door (Stage A of issue 21)
