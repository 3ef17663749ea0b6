"""The table models without a window: correctness of in-place updates, and cost at 100,000 rows."""

from __future__ import annotations

import random
import sys

import pytest
from PySide6.QtCore import Qt, QTimer

from app.gui.models import PROGRESS_ROLE, ROW_ROLE, FilesModel, PeersModel, prepare_rows

STATES = ["synced", "local_change", "remote_change", "conflict", "error", "ignored"]


def shown(model: FilesModel) -> list[str]:
    return [model.index(i, 0).data() for i in range(model.rowCount())]


def expected(rows: dict[str, tuple], col: int, desc: bool, only: bool, text: str) -> list[str]:
    keyf = {
        0: lambda r: (r[0].casefold(), r[0]),
        1: lambda r: (r[1], r[0]),
        2: lambda r: (r[2], r[0]),
        3: lambda r: (["error", "conflict", "remote_change", "local_change", "synced",
                       "ignored"].index(r[3]), r[0].casefold(), r[0]),
    }[col]
    keep = [r for r in rows.values()
            if (not only or r[3] in ("local_change", "remote_change", "conflict", "error"))
            and text.casefold() in r[0].casefold()]
    keep.sort(key=keyf, reverse=desc)
    return [r[0] for r in keep]


def test_model_passes_qt_model_tester(qtmodeltester):
    model = FilesModel()
    model.reset_rows([(f"d/f{i}", i, float(i), STATES[i % 6], "") for i in range(50)])
    qtmodeltester.check(model, force_py=True)
    peers = PeersModel()
    peers.set_peers([{"device_id": "ABCDEFG-X", "name": "me", "self": True, "role": "server",
                      "state": "connected"}])
    qtmodeltester.check(peers, force_py=True)


@pytest.mark.parametrize("seed", range(6))
def test_random_updates_match_a_plain_sort(seed):
    rnd = random.Random(seed)
    model = FilesModel()
    rows = {f"dir{i % 7}/File{i}.txt": (f"dir{i % 7}/File{i}.txt", rnd.randrange(1000),
                                        float(rnd.randrange(50)), rnd.choice(STATES), "")
            for i in range(300)}
    model.reset_rows(rows.values())
    col, desc, only, text = 0, False, False, ""
    for step in range(60):
        what = rnd.random()
        if what < 0.15:
            col, desc = rnd.randrange(4), rnd.random() < 0.5
            model.sort(col, Qt.SortOrder.DescendingOrder if desc else Qt.SortOrder.AscendingOrder)
        elif what < 0.25:
            only, text = rnd.random() < 0.5, rnd.choice(["", "file1", "DIR3", "zzz"])
            model.set_filter(only_unsynced=only, text=text)
        else:
            n = rnd.choice([1, 3, 10, 100])  # small batches go row by row, big ones relayout
            changed, removed = [], []
            for _ in range(n):
                if rnd.random() < 0.2 and rows:
                    path = rnd.choice(sorted(rows))
                    del rows[path]
                    removed.append(path)
                else:
                    path = f"dir{rnd.randrange(9)}/File{rnd.randrange(400)}.txt"
                    if path in removed:
                        continue
                    rows[path] = (path, rnd.randrange(1000), float(rnd.randrange(50)),
                                  rnd.choice(STATES), "")
                    changed.append(rows[path])
            changed = list({r[0]: rows[r[0]] for r in changed if r[0] in rows}.values())
            model.apply_update(changed, removed)
        assert shown(model) == expected(rows, col, desc, only, text), f"step {step}"
        for p in rnd.sample(sorted(rows), min(5, len(rows))):
            row = model.row_of(p)
            if row >= 0:
                assert model.index(row, 0).data(ROW_ROLE)[0] == p
    assert model.total_files() == len(rows)
    assert model.count("synced") == sum(r[3] == "synced" for r in rows.values())


def test_a_row_is_the_trackers_own_tuple():
    """At a million files the table's memory is its rows: the model keeps the tuples it
    is given (the state tracker's), makes no copy of them, and holds nothing else per
    row but a dict entry and a slot of the view; a file's progress lives beside."""
    rows = [(f"d/f{i}", i, float(i), STATES[i % 6], "") for i in range(100)]
    model = FilesModel()
    model.reset_rows(rows)
    assert all(model.get(r[0]) is r for r in rows)
    new = ("d/f7", 1, 2.0, "remote_change", "")
    model.apply_update([new])
    assert model.get("d/f7") is new
    model.set_progress({"d/f7": (1, 2)})
    assert model.get("d/f7") is new
    assert model.index(model.row_of("d/f7"), 3).data(ROW_ROLE) is new


def test_a_big_update_goes_in_slices_between_which_the_window_lives(qtbot, monkeypatch):
    """An update of many rows (who is connected changed the why of a million local
    changes) is applied a slice per turn of the event loop, in order, its removals
    last; an update that comes meanwhile waits its turn, and a reset drops what waits."""
    from app.gui import models

    monkeypatch.setattr(models, "SLICE_ROWS", 100)
    model = FilesModel()
    model.reset_rows([(f"f{i:04d}", 1, 1.0, "local_change", "") for i in range(1000)])
    model.apply_update([(f"f{i:04d}", 1, 1.0, "local_change", "seen") for i in range(1000)],
                       ["f0000"])
    model.apply_update([("f0001", 2, 2.0, "synced", "")])
    assert model.get("f0099")[4] == "seen" and model.get("f0100")[4] == ""  # a slice now
    turns = []
    timer = QTimer()
    timer.timeout.connect(lambda: turns.append(model.get("f0999")[4]))
    timer.start(0)
    qtbot.waitUntil(lambda: model.get("f0001")[3] == "synced", timeout=5000)
    timer.stop()
    assert "" in turns  # the event loop ran between the slices
    assert model.get("f0000") is None and model.total_files() == 999
    assert model.get("f0999")[4] == "seen" and model.count("synced") == 1
    model.apply_update([(f"f{i:04d}", 1, 1.0, "error", "x") for i in range(2, 1000)])
    model.reset_rows([("new", 1, 1.0, "synced", "")])
    qtbot.wait(50)
    assert model.all_paths() == ["new"] and model.count("error") == 0


def test_progress_and_conflict_list(qtbot):
    model = FilesModel()
    model.reset_rows([("a.txt", 10, 1.0, "remote_change", ""), ("b.txt", 5, 1.0, "synced", ""),
                      ("b.sync-conflict-20260101-120000-ABCDEFG.txt", 5, 1.0, "conflict", "")])
    assert model.conflict_copies() == ["b.sync-conflict-20260101-120000-ABCDEFG.txt"]
    model.set_progress({"a.txt": (5, 10)})
    assert model.index(model.row_of("a.txt"), 3).data(PROGRESS_ROLE) == 0.5
    assert model.index(model.row_of("a.txt"), 3).data() == "Incoming 50%"
    model.set_progress({})
    assert model.index(model.row_of("a.txt"), 3).data(PROGRESS_ROLE) is None
    with qtbot.waitSignal(model.conflicts_changed) as sig:
        model.apply_update([], ["b.sync-conflict-20260101-120000-ABCDEFG.txt"])
    assert sig.args == [[]]


class Spy:
    """Counts every signal a model sends a view."""

    NAMES = ("modelReset", "layoutChanged", "dataChanged", "rowsInserted", "rowsRemoved")

    def __init__(self, model):
        self.calls = dict.fromkeys(self.NAMES, 0)
        for name in self.NAMES:
            getattr(model, name).connect(lambda *a, n=name: self.calls.__setitem__(
                n, self.calls[n] + 1))


def test_100k_rows_cost_a_handful_of_signals(qtbot):
    """100,000 files in a real view: a reset and a batch of 10,000 changes are one signal
    each, and the view asks the model only about the rows it shows."""
    from PySide6.QtWidgets import QHeaderView, QTableView

    n = 100_000
    model = FilesModel()
    calls = {"data": 0, "rowCount": 0}
    original_data, original_count = model.data, model.rowCount

    def counting_data(index, role=Qt.ItemDataRole.DisplayRole):
        calls["data"] += 1
        return original_data(index, role)

    def counting_rows(*parent):
        calls["rowCount"] += 1
        return original_count(*parent)

    model.data = counting_data
    model.rowCount = counting_rows
    view = QTableView()  # as the window: a tree view would ask every row for children
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    view.setModel(model)
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    spy = Spy(model)
    model.reset_rows((f"d{i % 100}/f{i:06d}.bin", i, float(i), "remote_change", "")
                     for i in range(n))
    assert model.rowCount() == n
    # 10,000 files arrive: same place in the (path-sorted) view, state changes only
    model.apply_update([(f"d{i % 100}/f{i:06d}.bin", i, float(i), "synced", "")
                        for i in range(0, n, 10)])
    # 5 new files and 5 gone: inserted/removed one by one, no full relayout
    model.apply_update([(f"new/{i}", 1, 1.0, "local_change", "") for i in range(5)],
                       [f"d{i % 100}/f{i:06d}.bin" for i in range(1, 6)])
    qtbot.waitExposed(view)
    view.viewport().repaint()
    assert spy.calls == {"modelReset": 1, "layoutChanged": 0, "dataChanged": 1,
                         "rowsInserted": 5, "rowsRemoved": 5}
    assert model.count("synced") == n // 10
    assert model.rowCount() == n
    # painting asks about visible rows only: a few thousand calls, not n * columns * roles
    assert calls["data"] < 20_000
    assert calls["rowCount"] < 5_000
    # filtering and sorting 100,000 rows: one layoutChanged each
    model.set_filter(only_unsynced=True)
    assert model.rowCount() == n - n // 10 - 5 + 5
    model.sort(1, Qt.SortOrder.DescendingOrder)
    assert spy.calls["layoutChanged"] == 2
    assert model.index(0, 0).data() == f"d99/f{n - 1:06d}.bin"


def test_a_table_prepared_off_the_gui_thread_lets_that_thread_run_while_it_sorts():
    """prepare_rows runs in the worker while the GUI thread paints: its sort by path must
    give the GIL up along the way. The interpreter passes it only between Python calls,
    and a sort keyed on the C method str.casefold held it throughout (240-274 ms at a
    million rows). Here: the keys are Python calls (one per row, each a point where
    the GIL can pass), and the order is still the table's own."""
    rows = [(f"Dir{i % 5}/file{i}.TXT", i, float(i), "synced", "") for i in range(2000)]
    rows += [("dir0/File0.txt", 1, 1.0, "synced", ""), ("DIR0/file0.txt", 2, 2.0, "synced", "")]
    random.Random(3).shuffle(rows)
    python_calls = 0

    def count(frame, event, arg):
        nonlocal python_calls
        if event == "call" and frame.f_code.co_filename.endswith("models.py") and \
                frame.f_code.co_name != "prepare_rows":
            python_calls += 1

    sys.setprofile(count)
    try:
        prepared = prepare_rows(rows)
    finally:
        sys.setprofile(None)
    assert python_calls >= len(rows)
    by_path = {r[0]: r for r in rows}
    assert prepared.view == expected(by_path, 0, False, False, "")
    model = FilesModel()
    model.reset_rows(rows)
    assert shown(model) == prepared.view
