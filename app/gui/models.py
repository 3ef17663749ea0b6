"""Table models of the window: the share's files and the peers.

FilesModel holds one small list per file and a sorted, filtered view of them; it
sorts and filters itself (a QSortFilterProxyModel would call back into Python for
every comparison: seconds at 100,000 rows). Updates arrive in batches keyed by path:
rows that keep their place get one `dataChanged` for the batch; rows that come, go or
move are inserted/removed one by one at their sorted place (found by bisection on a
cached sort key) while they are few, and the view is rebuilt in one `layoutChanged`
when they are many. No widget per row: the views paint from these models.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRectF,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap

from app import resources
from app.core.apply import is_conflict_copy
from app.core.states import CONFLICT, ERROR, IGNORED, LOCAL_CHANGE, REMOTE_CHANGE, SYNCED
from app.core.units import human_size
from app.gui.elide import SENTENCE_ROLE

DISPLAY = Qt.ItemDataRole.DisplayRole
DECORATION = Qt.ItemDataRole.DecorationRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
ALIGN = Qt.ItemDataRole.TextAlignmentRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
ROW_ROLE = Qt.ItemDataRole.UserRole  # the raw row (a list) behind an index
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 1  # 0..1 while a file comes in, else None
# (UserRole + 2: app.gui.elide.SENTENCE_ROLE)

STATE_LABELS = {
    SYNCED: "Synced",
    LOCAL_CHANGE: "Local change",
    REMOTE_CHANGE: "Incoming",
    CONFLICT: "Conflict",
    ERROR: "Error",
    IGNORED: "Ignored",
}
# sort order of the state column: what needs attention first
STATE_ORDER = {ERROR: 0, CONFLICT: 1, REMOTE_CHANGE: 2, LOCAL_CHANGE: 3, SYNCED: 4, IGNORED: 5}
NOT_SYNCED = {LOCAL_CHANGE, REMOTE_CHANGE, CONFLICT, ERROR}

# one file: (path, size, mtime, state, reason), as `app.gui.filestates` makes it: the
# tracker's own tuple, shared, never copied (at a million files every byte of a row
# counts a megabyte)
Row = tuple
PATH, SIZE, MTIME, STATE, REASON = range(5)
REBUILD_ABOVE = 64  # more rows than this come, go or move in one batch: one layoutChanged
WHOLE_RANGE_ABOVE = 256  # more changed rows than this: one dataChanged over every row
SLICE_ROWS = 20_000  # rows of an update applied in one turn of the event loop

_icons: dict[str, QIcon] = {}


def app_icon() -> QIcon:
    icon = _icons.get(":app")
    if icon is None:
        icon = _icons[":app"] = QIcon()
        for f in resources.app_icon_files():
            icon.addFile(str(f))
    return icon


def state_icon(name: str) -> QIcon:
    icon = _icons.get(name)
    if icon is None:
        icon = QIcon()
        for f in resources.state_icon_files(name):
            icon.addFile(str(f))
        _icons[name] = icon
    return icon


_pies: dict[int, QIcon] = {}


def progress_icon(value: float) -> QIcon:
    """The state icon of a file coming in: a pie that fills as the transfer goes.

    An icon, not a custom delegate: painting a cell stays one call into Python.
    """
    step = max(0, min(50, int(value * 50)))  # 2 % steps: 51 icons at most
    icon = _pies.get(step)
    if icon is None:
        icon = QIcon()
        color = QColor("#0891B2")  # the colour of the "incoming" icon
        for size in (16, 32, 48):
            pix = QPixmap(size, size)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            pen = size / 10
            box = QRectF(pen / 2 + size * 0.06, pen / 2 + size * 0.06,
                         size * 0.88 - pen, size * 0.88 - pen)
            p.setPen(QPen(color, pen))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(box)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(color)
            p.drawPie(box, 90 * 16, -int(360 * 16 * step / 50))
            p.end()
            icon.addPixmap(pix)
        _pies[step] = icon
    return icon


def human_time(t: float) -> str:
    if not t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def row_tooltip(r: Row, state_only: bool = False, progress: float | None = None) -> str:
    """Why the file is in its state (how far it came, while it comes in), after its path
    (which the table may show cut) unless `state_only` (the state column's tooltip)."""
    why = f"downloading: {int(progress * 100)}% of {human_size(r[SIZE])}" \
        if progress is not None else r[REASON]
    if state_only and why:
        return why
    return f"{r[PATH]}\n{why}" if why else r[PATH]


def _key_path(r: Row) -> tuple:
    return (r[PATH].casefold(), r[PATH])


def _key_size(r: Row) -> tuple:
    return (r[SIZE], r[PATH])


def _key_mtime(r: Row) -> tuple:
    return (r[MTIME], r[PATH])


def _key_state(r: Row) -> tuple:
    return (STATE_ORDER.get(r[STATE], 9), r[PATH].casefold(), r[PATH])


_KEYS = (_key_path, _key_size, _key_mtime, _key_state)  # a row's place, by column


def _sort_paths(paths: list[str], rows: dict[str, Row], column: int,
                casefold: Callable[[str], str] = str.casefold) -> None:
    """Sort paths in place as `_KEYS[column]` orders their rows, in stable passes whose
    keys are objects that exist already or one string each: a key tuple made for each
    of a million rows took more memory at once than the table itself. `casefold`:
    see `_yielding_casefold`."""
    paths.sort()
    if column == 1:
        paths.sort(key=lambda p: rows[p][SIZE])
    elif column == 2:
        paths.sort(key=lambda p: rows[p][MTIME])
    else:
        paths.sort(key=casefold)
        if column == 3:
            paths.sort(key=lambda p: STATE_ORDER.get(rows[p][STATE], 9))


def _without(view: list[str], drop: list[int]) -> list[str]:
    """view less the items at these ascending positions, in slices (no Python loop over
    the view)."""
    out: list[str] = []
    start = 0
    for pos in drop:
        out.extend(view[start:pos])
        start = pos + 1
    out.extend(view[start:])
    return out


def _with(view: list[str], at: list[int], paths: list[str]) -> list[str]:
    """view with paths[i] put before the item at position at[i] (ascending), in slices."""
    out: list[str] = []
    start = 0
    for pos, path in zip(at, paths, strict=True):
        out.extend(view[start:pos])
        out.append(path)
        start = pos
    out.extend(view[start:])
    return out


@dataclass
class Prepared:
    """A whole table built outside the GUI thread (see prepare_rows)."""

    by_path: dict[str, Row]
    view: list[str]  # every path, in the default order (by path)
    count: dict[str, int]
    nbytes: dict[str, int]
    copies: set[str]


def _yielding_casefold(path: str) -> str:
    """str.casefold as a Python function, for a sort off the GUI thread: the interpreter
    hands the GIL to another thread only between Python calls, and a million paths
    sorted on the C method held it throughout (the UI thread stalled 240-274 ms when a
    freshly indexed million filled the table). Slower by about half (100-120 ms against
    150-300 ms at a million), so the GUI thread's own sorts keep the C method."""
    return path.casefold()


def prepare_rows(rows: Iterable[tuple]) -> Prepared:
    """Build a table of rows (path, size, mtime, state, reason) for FilesModel.reset_rows.

    Plain Python, no Qt: the worker runs it in a helper thread, so that filling the
    table with 100,000 files costs the GUI thread one assignment, not a sort.
    """
    by_path: dict[str, Row] = {}
    count: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    copies: set[str] = set()
    for t in rows:
        r = t if type(t) is tuple else tuple(t)
        path, size, state = r[PATH], r[SIZE], r[STATE]
        by_path[path] = r
        count[state] = count.get(state, 0) + 1
        nbytes[state] = nbytes.get(state, 0) + size
        if state == CONFLICT and is_conflict_copy(path):
            copies.add(path)
    view = list(by_path)
    _sort_paths(view, by_path, FilesModel.COL_PATH, _yielding_casefold)
    return Prepared(by_path, view, count, nbytes, copies)


class FilesModel(QAbstractTableModel):
    """Every file of the share; sortable, filterable, updated in place by path.

    A row is its tracker's tuple, kept once in `_by_path`; the view is the list of the
    paths shown, ascending by the sort column's key (`_KEYS`: every key ends with the
    path, so each place is found by bisection). A file's progress, while it comes in,
    lives beside (`_progress`). So a file costs the table a dict entry and a list slot.
    """

    HEADERS = ("Path", "Size", "Modified", "State")
    COL_PATH, COL_SIZE, COL_MTIME, COL_STATE = range(4)

    totals_changed = Signal()
    conflicts_changed = Signal(object)  # sorted list of conflict-copy paths

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._by_path: dict[str, Row] = {}
        self._view: list[str] = []  # the paths shown, ascending by the sort key
        self._sort_col = self.COL_PATH
        self._descending = False
        self._only_unsynced = False
        self._text = ""
        self._progress: dict[str, float] = {}  # path -> how much of it came in, 0..1
        self._count: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._copies: set[str] = set()
        self._pending: deque[tuple[list[tuple], int, list[str]]] = deque()  # apply_update's
        self.stats = {"resets": 0, "layouts": 0, "inserts": 0, "removes": 0, "changes": 0}

    # --- Qt model interface --------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._view)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 4

    def headerData(self, section, orientation, role=DISPLAY):
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
            return self.HEADERS[section]
        return None

    def data(self, index, role=DISPLAY):
        return self._value(self.row_at(index.row()), index.column(), role)

    def multiData(self, index, span) -> None:  # noqa: N802 - Qt's name
        """Every role of one cell in one call: what the views' delegates ask (Qt 6).

        Painting a row then costs one call into Python per cell instead of one per
        cell and role; while the engine thread is busy, each of those calls may have
        to wait for the GIL, so their number is what keeps scrolling smooth.
        """
        r = self.row_at(index.row())
        col = index.column()
        for item in span:  # the caller reuses the span: every role must be set or cleared
            value = self._value(r, col, item.role())
            if value is None:
                item.clearData()
            else:
                item.setData(value)

    def _value(self, r: Row, col: int, role):
        progress = self._progress.get(r[PATH]) if self._progress else None
        if role == DISPLAY:
            if col == 0:
                return r[PATH]
            if col == 1:
                return human_size(r[SIZE])
            if col == 2:
                return human_time(r[MTIME])
            label = STATE_LABELS.get(r[STATE], r[STATE])
            if progress is not None:
                return f"{label} {int(progress * 100)}%"
            if r[STATE] == ERROR and r[REASON]:
                return f"{label}: {r[REASON]}"
            return label
        if role == DECORATION:
            if col != 3:
                return None
            return state_icon(r[STATE]) if progress is None else progress_icon(progress)
        if role == ALIGN:
            return _RIGHT if col == 1 else None
        if role == TOOLTIP:
            return row_tooltip(r, col == 3, progress)
        if role == PROGRESS_ROLE:
            return progress
        if role == SENTENCE_ROLE:  # "Error: why": its start says what happened
            return col == 3 and progress is None and r[STATE] == ERROR and bool(r[REASON])
        if role == ROW_ROLE:
            return r
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        descending = order == Qt.SortOrder.DescendingOrder
        if column == self._sort_col and descending == self._descending:
            return
        if column != self._sort_col:
            self._sort_col = column
            self._relayout(resort=True, descending=descending)
        else:
            self._relayout(resort=False, descending=descending)

    # --- reading -------------------------------------------------------------------
    def row_at(self, row: int) -> Row:
        return self._by_path[self._view[len(self._view) - 1 - row if self._descending else row]]

    def row_of(self, path: str) -> int:
        """The row at which `path` is shown, or -1 when it is not (unknown or filtered)."""
        r = self._by_path.get(path)
        pos = self._find(r) if r is not None else -1
        return -1 if pos < 0 else self._display(pos)

    def get(self, path: str) -> Row | None:
        return self._by_path.get(path)

    def progress_of(self, path: str) -> float | None:
        """How much of the file came in (0..1) while it does, else None."""
        return self._progress.get(path)

    def state_of(self, path: str) -> str | None:
        r = self._by_path.get(path)
        return r[STATE] if r else None

    def all_paths(self) -> list[str]:
        return list(self._by_path)

    def total_files(self) -> int:
        return len(self._by_path)

    def states(self) -> list[str]:
        """The states some row has or had (their counts may be 0)."""
        return list(self._count)

    def count(self, state: str) -> int:
        return self._count.get(state, 0)

    def bytes_in(self, state: str) -> int:
        return self._bytes.get(state, 0)

    def conflict_copies(self) -> list[str]:
        return sorted(self._copies)

    # --- filtering -----------------------------------------------------------------
    def set_filter(self, *, only_unsynced: bool | None = None, text: str | None = None) -> None:
        if only_unsynced is not None:
            self._only_unsynced = only_unsynced
        if text is not None:
            self._text = text.casefold()
        self._relayout(resort=True, descending=self._descending, refilter=True)

    def _accepts(self, r: Row) -> bool:
        if self._only_unsynced and r[STATE] not in NOT_SYNCED:
            return False
        return not self._text or self._text in r[PATH].casefold()

    # --- updates -------------------------------------------------------------------
    def reset_rows(self, rows: Iterable[tuple] | Prepared) -> None:
        """Replace every row (the first snapshot, or after the index started over)."""
        table = rows if isinstance(rows, Prepared) else prepare_rows(rows)
        self._pending.clear()  # updates of the rows it replaces
        self.beginResetModel()
        self._by_path = table.by_path
        self._count, self._bytes = table.count, table.nbytes
        self._progress = {}
        if self._sort_col == self.COL_PATH and not self._only_unsynced and not self._text:
            self._view = table.view  # already in this order
        else:
            self._view = self._filtered_sorted()
        self.endResetModel()
        self.stats["resets"] += 1
        copies_changed = table.copies != self._copies
        self._copies = table.copies
        self.totals_changed.emit()
        if copies_changed:
            self.conflicts_changed.emit(sorted(self._copies))

    def apply_update(self, rows: Iterable[tuple], removed: Iterable[str] = ()) -> None:
        """Some rows changed, came or went (path, size, mtime, state, reason).

        A big update goes in SLICE_ROWS rows at a time, one slice per turn of the
        event loop, its removals with the last: when who is connected changes, so
        does the why of every local change, and a million rows in one call held the
        window 3 s. Updates that come meanwhile wait their turn; a reset drops them.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        self._pending.append((rows, 0, list(removed)))
        if len(self._pending) == 1:
            self._apply_pending()

    def _apply_pending(self) -> None:
        if not self._pending:
            return
        rows, start, removed = self._pending[0]
        end = start + SLICE_ROWS
        if end < len(rows):
            self._pending[0] = (rows, end, removed)
            self._apply(rows[start:end], [])
        else:
            self._pending.popleft()
            self._apply(rows[start:] if start else rows, removed)
        if self._pending:
            QTimer.singleShot(0, self, self._apply_pending)

    def _apply(self, rows: list[tuple], removed: list[str]) -> None:
        """The rows that leave the view are found at the places of their old values, so
        the new ones are put in `_by_path` only once those are out (`commit`)."""
        keyf = _KEYS[self._sort_col]
        new = {t[0]: t if type(t) is tuple else tuple(t) for t in rows}
        gone = [p for p in removed if p in self._by_path]
        for path in gone:
            new.pop(path, None)
        copies = set(self._copies)
        in_place: list[Row] = []
        leave: list[Row] = []  # old rows to take out of the view
        enter: list[Row] = []  # new rows to put in at their place
        for path, r in new.items():
            old = self._by_path.get(path)
            if old is not None and old[SIZE] == r[SIZE] and old[MTIME] == r[MTIME] and \
                    old[STATE] == r[STATE]:
                in_place.append(r)  # its why alone: same counts, place and visibility
                continue
            if old is not None:
                self._add_counts(old, -1)
            self._add_counts(r, 1)
            if r[STATE] != REMOTE_CHANGE:
                self._progress.pop(path, None)
            if r[STATE] == CONFLICT and is_conflict_copy(path):
                copies.add(path)
            else:
                copies.discard(path)
            now = self._accepts(r)
            if old is not None and self._accepts(old):
                if now and keyf(old) == keyf(r):
                    in_place.append(r)
                    continue
                leave.append(old)
            if now:
                enter.append(r)
        for path in gone:
            old = self._by_path[path]
            self._add_counts(old, -1)
            self._progress.pop(path, None)
            copies.discard(path)
            if self._accepts(old):
                leave.append(old)

        def commit() -> None:
            self._by_path.update(new)
            for path in gone:
                del self._by_path[path]

        if len(leave) + len(enter) > REBUILD_ABOVE:
            self._relayout(resort=False, descending=self._descending,
                           rebuild=lambda: self._rebuild(leave, enter, commit))
        else:
            for r in leave:
                self._remove_visible(r)
            commit()
            for r in enter:
                self._insert_visible(r)
        self._changed(in_place)
        self.totals_changed.emit()
        if copies != self._copies:
            self._copies = copies
            self.conflicts_changed.emit(sorted(copies))

    def set_progress(self, progress: dict[str, tuple[int, int]]) -> None:
        """Files coming in now: path -> (bytes done, size); others lose their figure."""
        new = {path: min(1.0, done / size) if size else 0.0
               for path, (done, size) in progress.items() if path in self._by_path}
        touched = [self._by_path[p] for p in self._progress.keys() | new.keys()
                   if p in self._by_path and self._progress.get(p) != new.get(p)]
        self._progress = new
        self._changed(touched, columns=(self.COL_STATE, self.COL_STATE))

    # --- internals -----------------------------------------------------------------
    def _display(self, pos: int) -> int:
        return len(self._view) - 1 - pos if self._descending else pos

    def _place(self, r: Row) -> int:
        """Where r's path is, or would go, in the (ascending) view, by r's values and
        the values in `_by_path` of every path in the view."""
        keyf, rows = _KEYS[self._sort_col], self._by_path
        return bisect_left(self._view, keyf(r), key=lambda p: keyf(rows[p]))

    def _find(self, r: Row) -> int:
        """Position of r's path in the view, or -1 (filtered out)."""
        if not self._accepts(r):
            return -1
        pos = self._place(r)
        return pos if pos < len(self._view) and self._view[pos] == r[PATH] else -1

    def _remove_visible(self, r: Row) -> None:
        pos = self._find(r)
        if pos < 0:
            return
        row = self._display(pos)
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._view[pos]
        self.endRemoveRows()
        self.stats["removes"] += 1

    def _insert_visible(self, r: Row) -> None:
        pos = self._place(r)
        row = len(self._view) - pos if self._descending else pos
        self.beginInsertRows(QModelIndex(), row, row)
        self._view.insert(pos, r[PATH])
        self.endInsertRows()
        self.stats["inserts"] += 1

    def _changed(self, rows: list[Row], columns: tuple[int, int] = (0, 3)) -> None:
        if not rows or not self._view:
            return
        if len(rows) > WHOLE_RANGE_ABOVE:
            first, last = 0, len(self._view) - 1
        else:
            shown = [self._find(r) for r in rows]
            shown = [self._display(p) for p in shown if p >= 0]
            if not shown:
                return
            first, last = min(shown), max(shown)
        self.dataChanged.emit(self.index(first, columns[0]), self.index(last, columns[1]))
        self.stats["changes"] += 1

    def _filtered_sorted(self) -> list[str]:
        rows = self._by_path
        if self._only_unsynced or self._text:
            view = [p for p, r in rows.items() if self._accepts(r)]
        else:
            view = list(rows)
        _sort_paths(view, rows, self._sort_col)
        return view

    def _rebuild(self, leave: list[Row], enter: list[Row], commit) -> None:
        """Many rows come, go or move: the view rebuilt in slices around them, so the
        cost is one copy of the view plus a bisection per row that moves, even at a
        million rows (no key is made for the rows that stay)."""
        drop = sorted(p for p in map(self._find, leave) if p >= 0)
        if drop:
            self._view = _without(self._view, drop)
        commit()
        keyf = _KEYS[self._sort_col]
        enter = sorted(enter, key=keyf)
        at = [self._place(r) for r in enter]
        self._view = _with(self._view, at, [r[PATH] for r in enter])

    def _relayout(self, *, resort: bool, descending: bool, refilter: bool = False,
                  rebuild=None) -> None:
        """Re-sort and/or re-filter everything in one layoutChanged, keeping selections."""
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        held = [(self.row_at(i.row())[PATH] if 0 <= i.row() < len(self._view) else None,
                 i.column()) for i in persistent]
        self._descending = descending
        if rebuild is not None:
            rebuild()
        elif resort or refilter:
            self._view = self._filtered_sorted()
        new_indexes = []
        for path, col in held:
            r = self._by_path.get(path) if path is not None else None
            pos = self._find(r) if r is not None else -1
            new_indexes.append(self.index(self._display(pos), col) if pos >= 0 else QModelIndex())
        self.changePersistentIndexList(persistent, new_indexes)
        self.layoutChanged.emit()
        self.stats["layouts"] += 1

    def _add_counts(self, r: Row, sign: int) -> None:
        s = r[STATE]
        self._count[s] = self._count.get(s, 0) + sign
        self._bytes[s] = self._bytes.get(s, 0) + sign * r[SIZE]


# --- peers -------------------------------------------------------------------------
class PeersModel(QAbstractTableModel):
    """This device and every device seen or connected, one row each (app.gui.peerrows)."""

    # the state last: it stretches, so a long reason has the room the window has
    HEADERS = ("Device", "Address", "Role", "Completion", "Transfer", "State")
    COL_DEVICE, COL_ADDRESS, COL_ROLE, COL_COMPLETION, COL_TRANSFER, COL_STATE = range(6)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[dict] = []
        self._own: tuple[int, int, float] | None = None  # files, bytes to go, fraction

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=DISPLAY):
        if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
            return self.HEADERS[section]
        return None

    def data(self, index, role=DISPLAY):
        return self._value(self._rows[index.row()], index.column(), role)

    def multiData(self, index, span) -> None:  # noqa: N802 - Qt's name
        p, col = self._rows[index.row()], index.column()
        for item in span:  # see FilesModel.multiData
            value = self._value(p, col, item.role())
            if value is None:
                item.clearData()
            else:
                item.setData(value)

    def _value(self, p: dict, col: int, role):
        if role == DISPLAY:
            if col == self.COL_DEVICE:
                return f"{p['name']} (this device)" if p.get("self") else p["name"]
            if col == self.COL_ADDRESS:
                return p.get("address", "")
            if col == self.COL_ROLE:
                return p.get("role") or ""
            if col == self.COL_STATE:
                return state_text(p)
            if col == self.COL_COMPLETION:
                return completion_text(p)
            if col == self.COL_TRANSFER:
                return _rate_text(p)
            return None
        if role == DECORATION and col == 0:
            if p.get("self"):
                return state_icon("this_device")
            state = p.get("state", "")
            if state == "connected":
                return state_icon("peer_online")
            if state == "connecting":
                return state_icon("peer_connecting")
            return state_icon("peer_offline")
        if role == TOOLTIP:
            if col == self.COL_DEVICE and p.get("device_id"):
                return f"{p['name']}\ndevice ID {p['device_id']}"
            if col == self.COL_STATE:
                return state_text(p)
            return None
        if role == ROW_ROLE:
            return p
        return None

    def set_peers(self, peers: list[dict]) -> None:
        """The whole list (it is short); rows keep their place when only values change."""
        if self._own is not None:
            peers = [dict(p, need_files=self._own[0], need_bytes=self._own[1],
                          complete=self._own[2]) if p.get("self") else p for p in peers]
        if [_peer_key(p) for p in peers] == [_peer_key(p) for p in self._rows]:
            if peers != self._rows:
                self._rows = peers
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(len(peers) - 1, len(self.HEADERS) - 1))
            return
        self.beginResetModel()
        self._rows = peers
        self.endResetModel()

    def set_own_completion(self, files: int, nbytes: int, fraction: float) -> None:
        """This device's own row: what it still needs, as the progress bar says."""
        own = (files, nbytes, fraction)
        if own != self._own:
            self._own = own
            self.set_peers(self._rows)

    def peer(self, device_id: str) -> dict | None:
        return next((p for p in self._rows if p["device_id"] == device_id), None)

    def peers(self) -> list[dict]:
        return list(self._rows)


def _peer_key(p: dict) -> str:
    return p.get("key") or p["device_id"]


def when_text(t: float, now: float | None = None) -> str:
    """A past moment as people say it: 14:02 today, "yesterday 14:02", else the date."""
    now = time.time() if now is None else now
    day, today = time.localtime(t), time.localtime(now)
    if day[:3] == today[:3]:
        return time.strftime("%H:%M", day)
    if day[:3] == time.localtime(now - 86400)[:3]:
        return time.strftime("yesterday %H:%M", day)
    return time.strftime("%Y-%m-%d %H:%M", day)


def state_text(p: dict) -> str:
    """The state, when a device that is not connected was last seen, and why, in full."""
    state, reason = p.get("state", ""), p.get("reason", "")
    if state in ("connected", "refused"):
        return f"{state}: {reason}" if reason else state
    parts = ["connecting…" if state == "connecting" else state]
    if p.get("last_seen"):
        parts.append(f"last seen {when_text(p['last_seen'])}")
    if reason:
        parts.append(reason)
    return " · ".join(parts)


def completion_text(p: dict) -> str:
    if "complete" not in p:
        return ""
    files, nbytes = p.get("need_files", 0), p.get("need_bytes", 0)
    if not files:
        return "100%"
    pct = min(99, int(p["complete"] * 100))  # 100% only when nothing is left
    left = human_size(nbytes) if nbytes else f"{files:,} file{'s' if files != 1 else ''}"
    return f"{pct}% · {left} to go"


def _rate_text(p: dict) -> str:
    if p.get("self") or p.get("state") != "connected":
        return ""
    down, up = p.get("rate_in", 0.0), p.get("rate_out", 0.0)
    # only what moves: no "0 B/s" that reads like a stalled transfer
    return "  ".join(f"{arrow} {human_size(rate)}/s" for arrow, rate in (("↓", down), ("↑", up))
                     if rate)


__all__ = ["FilesModel", "PeersModel", "QPersistentModelIndex", "app_icon", "completion_text",
           "human_size", "human_time", "state_icon", "state_text", "when_text"]
