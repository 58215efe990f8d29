"""Regenerate the expected ``*.yaml`` fixtures with a real dandi-cli (not needed by the tests).

Usage: /path/to/dandi-cli-venv/bin/python generate_with_dandi_cli.py

For every ``<name>.json`` metadata dict this writes ``<name>.yaml`` with the bytes dandi-cli
writes for it, obtained three ways that must agree:

1. ``dandi.download._populate_dandiset_yaml`` -- the code path ``dandi download`` runs
   (given a stand-in for ``RemoteDandiset``), into an empty directory;
2. ``dandi.dandiset.Dandiset(...).update_metadata(meta)`` into an empty directory;
3. ``dandi.dandiset.Dandiset.get_dandiset_record(meta)`` (the string, encoded as UTF-8).
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from pathlib import Path

import dandi
from dandi.dandiset import Dandiset
from dandi.download import DownloadExisting, _populate_dandiset_yaml

HERE = Path(__file__).parent


class FakeRemoteDandiset:
    """Just what the dandiset.yaml writer of ``dandi download`` reads."""

    def __init__(self, meta: dict) -> None:
        self._meta = meta
        self.modified = datetime.datetime(2021, 6, 9, 19, 4, 27, tzinfo=datetime.timezone.utc)

    def get_raw_metadata(self) -> dict:
        return json.loads(json.dumps(self._meta))


def main() -> int:
    print("dandi-cli", dandi.__version__, file=sys.stderr)
    for src in sorted(HERE.glob("*.json")):
        meta = json.loads(src.read_text(encoding="utf-8"))
        outputs = []
        with tempfile.TemporaryDirectory() as tmp:
            dpath = Path(tmp, "via-download")
            records = list(
                _populate_dandiset_yaml(dpath, FakeRemoteDandiset(meta), DownloadExisting.ERROR)
            )
            assert records[-1].get("status") == "done", records
            outputs.append((dpath / "dandiset.yaml").read_bytes())
            upath = Path(tmp, "via-update")
            upath.mkdir()
            Dandiset(upath, allow_empty=True).update_metadata(json.loads(json.dumps(meta)))
            outputs.append((upath / "dandiset.yaml").read_bytes())
        outputs.append(Dandiset.get_dandiset_record(json.loads(json.dumps(meta))).encode("utf-8"))
        if len(set(outputs)) != 1:
            print(f"{src.name}: dandi-cli code paths disagree", file=sys.stderr)
            for o in outputs:
                print(repr(o[:300]), file=sys.stderr)
            return 1
        src.with_suffix(".yaml").write_bytes(outputs[0])
        print(f"{src.stem}.yaml: {len(outputs[0])} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
