"""The app's pairing dialogs: "Invite a device" shows a code, "Join with a code" types it.

`InviteDialog` drives the running engine's invitation through the EngineWorker
(`invite`, `decide_invitation`, `cancel_invitation`, and its `invitation` signal).
`JoinDialog` runs where the share key is not known yet, so where no engine runs: a QThread
of its own runs an asyncio loop for the beacon search and app.net.pairing.join, and the
dialog ends with the key (`joined`). Both show the other device's name and the
confirmation words large, with Pair / Refuse; every way it can end is one sentence in the
dialog, never a box on top of it. See docs/pairing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QThread, QTimer, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.first_run import key_font
from app.net.pairwords import EXAMPLE, CodeError, parse_code, typing_problem

WAITING, ASKING, RESULT = 0, 1, 2  # the pages of both dialogs; JoinDialog adds ENTRY
ENTRY = 3


@dataclass
class JoinOptions:
    """Where a joining device looks for the invitation (the app's launch options)."""

    config: object  # app.engine.config.Config
    peers: list[tuple[str, int]] = field(default_factory=list)
    discovery: bool = True
    discovery_port: int = 22101


def _label(text: str = "", *, name: str = "", scale: float = 1.0, bold: bool = False,
           muted: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    if name:
        label.setObjectName(name)
    if scale != 1.0 or bold:
        font = label.font()
        font.setPointSizeF(font.pointSizeF() * scale)
        if bold:
            font.setWeight(QFont.Weight.DemiBold)
        label.setFont(font)
    if muted:
        label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def _words_label() -> QLabel:
    label = QLabel(objectName="confirmWords")
    label.setFont(key_font(1.7))
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setContentsMargins(0, 10, 0, 10)
    return label


def _buttons(*buttons: QPushButton) -> QHBoxLayout:
    """A row of buttons on the right; only a button made default answers Return (in a
    QDialog every button would otherwise take Return once it had the focus)."""
    row = QHBoxLayout()
    row.addStretch(1)
    for b in buttons:
        b.setAutoDefault(b.isDefault())
        b.setMinimumWidth(96)
        row.addWidget(b)
    return row


class _PairingDialog(QDialog):
    """What both dialogs share: the pages, the asking page, the result page."""

    def __init__(self, title: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumSize(540, 250)  # every page of both dialogs: no jumping around
        self.pages = QStackedWidget()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 18)
        outer.addWidget(self.pages)

    def _asking_page(self, pair_text: str) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        self.ask_title = _label(name="askTitle", scale=1.45, bold=True)
        self.ask_text = _label(name="askText")
        self.words = _words_label()
        self.ask_hint = _label("Pair only if the other screen shows the same words.",
                               muted=True)
        self.pair_button = QPushButton(pair_text, objectName="pairButton")
        self.pair_button.setDefault(True)
        self.refuse_button = QPushButton("Refuse", objectName="refuseButton")
        v.addWidget(self.ask_title)
        v.addWidget(self.ask_text)
        v.addWidget(self.words)
        v.addWidget(self.ask_hint)
        v.addStretch(1)
        v.addLayout(_buttons(self.refuse_button, self.pair_button))
        return page

    def _result_page(self, again_text: str) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        self.result_title = _label(name="resultTitle", scale=1.45, bold=True)
        self.result_text = _label(name="resultText")
        self.result_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.again_button = QPushButton(again_text, objectName="againButton")
        self.close_button = QPushButton("Close", objectName="closeButton")
        self.close_button.clicked.connect(self.reject)
        v.addWidget(self.result_title)
        v.addWidget(self.result_text)
        v.addStretch(1)
        v.addLayout(_buttons(self.again_button, self.close_button))
        return page

    def _ask(self, title: str, text: str, words: str) -> None:
        self.ask_title.setText(title)
        self.ask_text.setText(text)
        self.words.setText(words)
        self.pair_button.setEnabled(True)
        self.refuse_button.setEnabled(True)
        self.pages.setCurrentIndex(ASKING)
        self.pair_button.setFocus()

    def _result(self, title: str, text: str, *, again: bool) -> None:
        self.result_title.setText(title)
        self.result_text.setText(text)
        self.again_button.setVisible(again)
        self.close_button.setDefault(not again)
        self.again_button.setDefault(again)
        self.pages.setCurrentIndex(RESULT)


# --- inviting --------------------------------------------------------------------------------
class InviteDialog(_PairingDialog):
    """This device shows a one-time code; a device that types it may join, once both say so.

    `worker` is the window's EngineWorker; `started` says whether its engine listens yet
    (else the invitation opens once it does).
    """

    def __init__(self, worker, started: bool, parent: QWidget | None = None) -> None:
        super().__init__("Invite a device", parent)
        self.setObjectName("inviteDialog")
        self.worker = worker
        self.code = ""
        self.state = ""
        self.peer: dict | None = None
        self._expires = 0.0
        self.pages.addWidget(self._waiting_page())
        self.pages.addWidget(self._asking_page("Pair"))
        self.pages.addWidget(self._result_page("New code"))
        self.pair_button.clicked.connect(lambda: self._decide(True))
        self.refuse_button.clicked.connect(lambda: self._decide(False))
        self.again_button.clicked.connect(self._open)
        self._tick = QTimer(self, interval=1000)
        self._tick.timeout.connect(self._countdown)
        worker.invitation.connect(self._on_invitation)
        self._when_started = None
        if started:
            self._open()
        else:  # "Open and invite a device": the engine is still starting
            self._when_started = lambda _info: self._open()
            worker.started.connect(self._when_started)

    def _waiting_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(_label("Invite a device", scale=1.45, bold=True))
        folder = getattr(getattr(self.worker, "opts", None), "folder", None)
        share = f" with \u201c{folder.name}\u201d" if folder is not None else ""
        v.addWidget(_label(f"On the other device, open p2psync, choose the folder to keep in "
                           f"sync{share} and click \u201cJoin with a code\u201d. Then type "
                           "this code:"))
        self.code_label = QLabel("…", objectName="inviteCode")
        self.code_label.setFont(key_font(2.2))
        self.code_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.code_label.setContentsMargins(0, 14, 0, 14)
        v.addWidget(self.code_label)
        self.countdown = _label("Opening the invitation…", name="inviteCountdown", muted=True)
        self.countdown.setAlignment(Qt.AlignmentFlag.AlignCenter)
        v.addWidget(self.countdown)
        v.addStretch(1)
        cancel = QPushButton("Cancel", objectName="cancelInvite")
        cancel.clicked.connect(self.reject)
        v.addLayout(_buttons(cancel))
        return page

    # --- the engine's word ---------------------------------------------------------------
    def _open(self) -> None:
        self.code, self.state, self.peer = "", "", None
        self.code_label.setText("…")
        self.countdown.setText("Opening the invitation…")
        self.pages.setCurrentIndex(WAITING)
        self.worker.invite()

    def _on_invitation(self, d: dict) -> None:
        state = d.get("state")
        if state == "failed":
            self._result("Could not invite", d.get("why", ""), again=True)
            return
        if state == "open":
            self.code = d["code"]
            self.code_label.setText(self.code)
            self._expires = time.monotonic() + d.get("left", 0)
            self._countdown()
            self._tick.start()
        if d.get("code") != self.code:
            return  # an invitation this dialog did not open (or replaced)
        self.state, self.peer = state, d.get("peer") or self.peer
        name = (self.peer or {}).get("name", "the other device")
        if state == "asking":
            self._ask(f"{name} wants to join this share",
                      f"{name}, at {self.peer.get('address', '?')}, typed the code. Check "
                      f"that {name} shows these same words:", self.peer["words"])
        elif state == "paired":
            self._tick.stop()
            self._result(f"{name} joined the share",
                         f"{name} has the share key now and is syncing with this device. "
                         "Invite another device with a new code.", again=True)
        elif state in ("burned", "declined", "expired", "cancelled"):
            self._tick.stop()
            title = {"burned": "Wrong code", "declined": "Not paired",
                     "expired": "The code expired", "cancelled": "Invitation cancelled"}[state]
            why = d.get("why", "")
            self._result(title, why[:1].upper() + why[1:] + ".", again=True)

    def _countdown(self) -> None:
        left = max(0, int(self._expires - time.monotonic()))
        self.countdown.setText(f"This code works once, for the next {left // 60}:{left % 60:02d}."
                               if left else "This code has expired.")

    def _decide(self, ok: bool) -> None:
        self.pair_button.setEnabled(False)
        self.refuse_button.setEnabled(False)
        self.worker.decide_invitation(ok)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name: closing ends the invitation
        if self.state in ("", "open", "asking"):
            self.worker.cancel_invitation()
        self._tick.stop()
        with contextlib.suppress(RuntimeError, TypeError):
            self.worker.invitation.disconnect(self._on_invitation)
        with contextlib.suppress(RuntimeError, TypeError):
            if self._when_started is not None:
                self.worker.started.disconnect(self._when_started)
        super().done(result)


# --- joining ---------------------------------------------------------------------------------
class _Joiner(QThread):
    """One try at joining, on an asyncio loop in this thread of its own."""

    found = Signal(str)  # the inviting device's name, once its beacon was heard
    asked = Signal(object)  # app.net.pairing.Peer: name and words to show
    joined = Signal(str, object)  # the share key, the Peer
    failed = Signal(str)

    def __init__(self, options: JoinOptions, code: str, name: str) -> None:
        super().__init__()
        self.options, self.code, self.name = options, code, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._answer: asyncio.Future | None = None
        self.asking = False  # its person is being asked (the other device waits for us)
        self.setObjectName("p2psync-join")

    def decide(self, ok: bool) -> None:
        loop, answer = self._loop, self._answer
        if loop is not None and answer is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(ok))

    def cancel(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as e:  # noqa: BLE001 - shown in the dialog, never a crash
            self.failed.emit(f"pairing failed: {e}")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            share_key, peer = await self._join()
        except asyncio.CancelledError:
            return
        except Exception as e:  # noqa: BLE001 - PairingError, OSError: one sentence
            self.failed.emit(str(e))
            return
        self.joined.emit(share_key, peer)

    async def _join(self):
        from app.net import beacon, identity, pairing

        nameplate, code = parse_code(self.code)
        config = self.options.config
        me = await asyncio.to_thread(lambda: (config.ensure_dir(),
                                              identity.load_or_create(config.dir))[1])
        if self.options.peers:
            host, port = self.options.peers[0]
        elif self.options.discovery:
            heard = await beacon.find(nameplate, self.options.discovery_port)
            if not heard:
                raise pairing.PairingError(
                    "none", f"No device nearby shows invitation {nameplate}: is the code "
                    "still shown on the other device, on this same network? (A firewall "
                    f"may block UDP port {self.options.discovery_port}.)")
            if len(heard) > 1:
                raise pairing.PairingError(
                    "none", f"{len(heard)} devices nearby show invitation {nameplate} ("
                    + ", ".join(h.name for h in heard) + "): cancel one of them, then "
                    "try again")
            host, port = heard[0].host, heard[0].port
            self.found.emit(heard[0].name)
        else:
            raise pairing.PairingError("none", "LAN discovery is off and no peer address "
                                       "was given (--peer): there is nowhere to look")

        async def decide(peer: pairing.Peer) -> bool:
            self._answer = asyncio.get_running_loop().create_future()
            self.asking = True
            self.asked.emit(peer)
            try:
                return await self._answer
            finally:
                self.asking = False

        joined = await pairing.join(host, port, code, me, self.name, decide)
        return joined.share_key, joined.peer


class JoinDialog(_PairingDialog):
    """Type the code another device shows; ends (accepted) with `joined(key, name)`."""

    joined = Signal(str, str)  # share key, the inviting device's name

    def __init__(self, options: JoinOptions, name: str, parent: QWidget | None = None,
                 folder: Path | None = None) -> None:
        super().__init__("Join with a code", parent)
        self.setObjectName("joinDialog")
        self.options, self.name, self.folder = options, name, folder
        self._joiner: _Joiner | None = None
        self.share_key = ""
        self.pages.addWidget(self._waiting_page())
        self.pages.addWidget(self._asking_page("Pair"))
        self.pages.addWidget(self._result_page("Try again"))
        self.pages.addWidget(self._entry_page())
        self.pair_button.clicked.connect(lambda: self._decide(True))
        self.refuse_button.clicked.connect(lambda: self._decide(False))
        self.again_button.clicked.connect(self._enter)
        self._enter()

    def _entry_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(_label("Join with a code", scale=1.45, bold=True))
        where = f" to keep the folder \u201c{self.folder.name}\u201d in sync with it" \
            if self.folder else ""
        v.addWidget(_label(f"On a device that has the share, choose \u201cInvite a "
                           f"device\u201d. Type the code it shows here{where}:"))
        self.code_edit = QLineEdit(objectName="codeEdit")
        self.code_edit.setPlaceholderText(f"e.g. {EXAMPLE}")
        self.code_edit.setFont(key_font(1.5))
        self.code_edit.textChanged.connect(self._judge)
        self.code_edit.returnPressed.connect(self._join)
        v.addSpacing(6)
        v.addWidget(self.code_edit)
        self.code_problem = _label(name="codeProblem")
        self.code_problem.hide()
        v.addWidget(self.code_problem)
        v.addStretch(1)
        self.join_button = QPushButton("Join", objectName="joinCode")
        self.join_button.setDefault(True)
        self.join_button.clicked.connect(self._join)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        v.addLayout(_buttons(cancel, self.join_button))
        return page

    def _waiting_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(0, 0, 0, 0)
        self.wait_title = _label(name="waitTitle", scale=1.45, bold=True)
        self.wait_text = _label(name="waitText", muted=True)
        v.addWidget(self.wait_title)
        v.addWidget(self.wait_text)
        v.addStretch(1)
        cancel = QPushButton("Cancel", objectName="cancelJoin")
        cancel.clicked.connect(self.reject)
        v.addLayout(_buttons(cancel))
        return page

    # --- steps -------------------------------------------------------------------------
    def _enter(self) -> None:
        self._judge()
        self.pages.setCurrentIndex(ENTRY)
        self.code_edit.setFocus()

    def _judge(self) -> None:
        text = self.code_edit.text()
        problem = typing_problem(text)
        if problem is None and text.strip():
            try:
                parse_code(text)
                ready = True
            except CodeError:
                ready = False
        else:
            ready = False
        self.code_problem.setText(f"\u2717 {problem[:1].upper()}{problem[1:]}" if problem else "")
        self.code_problem.setVisible(bool(problem))
        self.join_button.setEnabled(ready)

    def _join(self) -> None:
        if not self.join_button.isEnabled():
            return
        number, code = parse_code(self.code_edit.text())
        self._wait(f"Looking for invitation {number}…",
                   "Asking the devices of this network which one shows this code.")
        self._joiner = _Joiner(self.options, code, self.name)
        self._joiner.found.connect(lambda who: self._wait(
            f"Found {who}", f"Checking the code with {who}…"))
        self._joiner.asked.connect(self._on_asked)
        self._joiner.joined.connect(self._on_joined)
        self._joiner.failed.connect(self._on_failed)
        self._joiner.start()

    def _wait(self, title: str, text: str) -> None:
        self.wait_title.setText(title)
        self.wait_text.setText(text)
        self.pages.setCurrentIndex(WAITING)

    def _on_asked(self, peer) -> None:
        self.peer_name = peer.name
        host = peer.address.rpartition(":")[0] or peer.address
        self._ask(f"Pair with {peer.name}?",
                  f"The code is right: {peer.name}, at {host}, has the share. Check that "
                  f"{peer.name} shows these same words:", peer.words)

    def _decide(self, ok: bool) -> None:
        self.pair_button.setEnabled(False)
        self.refuse_button.setEnabled(False)
        if ok:
            self._wait(f"Waiting for {self.peer_name}…",
                       f"Confirm on {self.peer_name} too; then the share key comes over.")
        if self._joiner is not None:
            self._joiner.decide(ok)

    def _on_joined(self, share_key: str, peer) -> None:
        self.share_key = share_key
        self._end_joiner()
        self.joined.emit(share_key, peer.name)
        self.accept()

    def _on_failed(self, message: str) -> None:
        self._end_joiner()
        self._result("Not joined", message[:1].upper() + message[1:].rstrip(".") + ".",
                     again=True)

    def _end_joiner(self) -> None:
        joiner, self._joiner = self._joiner, None
        if joiner is not None:
            joiner.cancel()
            joiner.wait(5000)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name: closing stops the try
        joiner = self._joiner
        if joiner is not None and joiner.asking:  # tell the inviting device "no" first
            joiner.decide(False)
            joiner.wait(2000)
        self._end_joiner()
        super().done(result)


__all__ = ["InviteDialog", "JoinDialog", "JoinOptions"]
