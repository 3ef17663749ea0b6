"""FileEntry helpers."""

from __future__ import annotations

import dataclasses

from app.core.model import FileEntry, Kind


def test_recorded_keeps_every_synced_field_and_sets_the_local_ones():
    e = FileEntry("a/b", Kind.LINK, 5, 7, 0o755, b"h" * 32, b"", "t", {"D": 2}, "D", True, 9,
                  inode=11, error="broken", ctime_ns=13)
    r = e.recorded(21, 23)
    local = {"inode", "error", "ctime_ns"}
    for f in dataclasses.fields(FileEntry):  # a field added later must be carried too
        if f.name not in local:
            assert getattr(r, f.name) == getattr(e, f.name), f.name
    assert (r.inode, r.error, r.ctime_ns) == (21, "", 23)
    assert e.recorded() == dataclasses.replace(e, inode=0, error="", ctime_ns=0)
