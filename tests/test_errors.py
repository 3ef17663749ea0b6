"""`without_traceback`: an exception kept as a value frees its frame at once."""

from __future__ import annotations

import gc
import weakref

from app.errors import without_traceback


class _Held:
    pass


def _outcomes(keep) -> tuple[list[BaseException], weakref.ref]:
    held = _Held()  # a local of the frame that catches: what a traceback keeps alive
    out: list[BaseException] = []
    try:
        try:
            raise OSError(28, "no space")
        except OSError as inner:
            raise ValueError("what the caller sees") from inner
    except ValueError as e:
        out.append(keep(e))
    return out, weakref.ref(held)


def test_an_outcome_without_its_tracebacks_frees_its_frame_with_no_collection():
    gc.disable()
    try:
        out, held = _outcomes(without_traceback)
        assert held() is None
        assert out[0].__traceback__ is None and out[0].__cause__.__traceback__ is None
        assert str(out[0]) == "what the caller sees"
        out, held = _outcomes(lambda e: e)  # as it was: a cycle only a collection frees
        assert held() is not None
    finally:
        gc.enable()
    del out
    gc.collect()
    assert held() is None
