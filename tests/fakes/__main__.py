"""``python -m tests.fakes [--real-embedder] ARGS``: the ``rag`` command (``rag ARGS``) on the fake generator
and, unless ``--real-embedder``, the fake embedder. The reliability suite, the growth benchmark and the
tests that run ``rag`` in a subprocess start it so, with the repository on ``PYTHONPATH``."""

from __future__ import annotations

import sys

from rag import cli
from tests.fakes import FAKE_GENERATOR, FAKE_PARTS

if __name__ == "__main__":
    argv = sys.argv[1:]
    real_embedder = "--real-embedder" in argv[:1]
    sys.exit(cli.main(argv[1:] if real_embedder else argv, FAKE_GENERATOR if real_embedder else FAKE_PARTS))
