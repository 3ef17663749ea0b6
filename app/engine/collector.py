"""Run Python's cyclic garbage collector less often than its defaults.

A sync makes and drops a few objects per file (entries, rows, futures) by the hundred
thousand, and almost none of them form cycles (reference counting frees them). At
the default thresholds the collector still ran about every 700 of them: a first sync
of 100,000 small files made 2,178 young, 198 middle and 18 full collections, 0.6-0.7 s
in all, each one holding the GIL while the writer threads and the event loop waited.
Collecting a few times less often, with what the imports made set aside for good
(`gc.freeze`: a full collection no longer walks every module's objects), took that to
0.02 s; the same first sync went from 13.1 to 12.3 s (medians of four runs alternated
with the defaults, faster in each pair) and B's CPU from 14.5 to 13.3 s, and its peak
memory did not move (90-93 MB). Once per process: a second freeze would set aside for
good whatever garbage the first node left (tests and the app make several nodes).
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)  # the defaults are (700, 10, 10)
_done = False


def collect_less_often() -> None:
    """Once per process: raise the young generation's threshold, freeze what exists."""
    global _done
    if _done:
        return
    _done = True
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
