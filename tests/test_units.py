"""Work units and results are plain values: picklable, equal after a round trip, and with
nothing secret or live in them."""

from __future__ import annotations

import pickle
from pathlib import Path

from dandiget.instances import Instance
from dandiget.units import Batch, Fetch, FileUnit, RangeUnit, Result


def test_units_round_trip_through_pickle() -> None:
    inst = Instance("test", None, "http://127.0.0.1:9/api")
    fetch = Fetch("http://127.0.0.1:9/blobs/abc?X-Amz-Signature=secret",
                  "http://127.0.0.1:9/api/assets/x/download/", inst)
    units = (FileUnit("d/a.bin", Path("/o/d/a.bin"), Path("/o/d/.a.bin.part"), 10, ("md5", "0" * 32), 1,
                      fetch),
             RangeUnit("d/b.bin", Path("/o/d/.b.bin.part"), 200 << 20, 0, 1, fetch))
    batch = Batch(units)
    assert pickle.loads(pickle.dumps(batch)) == batch
    result = Result("d/a.bin", digest="0" * 32, stat=(10, 1, 2, 3), bytes=10)
    assert pickle.loads(pickle.dumps(result)) == result and result.ok
    assert not Result("x", error="boom", error_type="OSError").ok


def test_a_units_repr_hides_a_signed_url() -> None:
    inst = Instance("test", None, "http://127.0.0.1:9/api")
    fetch = Fetch("http://127.0.0.1:9/blobs/abc?X-Amz-Signature=secret", None, inst)
    unit = FileUnit("a", Path("/o/a"), Path("/o/.a"), 1, ("md5", "0" * 32), None, fetch)
    assert "secret" not in repr(unit) and "127.0.0.1:9" in repr(unit)
