"""The one runner: input items in bounded chunks -> a chain of stages -> committed batches (manifest parts).

Stages are named by dotted path ("i2a_core.jobs.sonify_stages:Decode") with plain-data arguments, and built
where they run: in this process, in a Ray actor, or in a Ray Data actor pool. A driver therefore never
imports model code (torch, open_clip, diffusers), and the same stages run on a laptop and on a cluster.
"""

from __future__ import annotations

import importlib


def load(path: str):
    """The object that a dotted path "package.module:attribute" names, imported in the calling process.

    This is how model code is reached from drivers (stages, Tune trainables): by name, built where it runs.
    tests/test_architecture.py counts these paths as imports when it checks the module graph for cycles.
    """
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
