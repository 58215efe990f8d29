"""dandiget: fast, verified, resumable downloads from the DANDI Archive.

The package is laid out along the data flow of a download::

    resolve  -> list     -> plan  -> transfer -> verify  -> commit  -> report
    resolve/    listing.py  plan.py  transfer.py digests.py commit.py  events.py/report.py

``engine.py`` wires the stages together; ``download.py`` is the dandi-cli compatible
surface (its adapters live in ``compat/``); ``cli.py`` is the command line; ``testing/`` is a DANDI-compatible test archive.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
