"""The rows of the devices view: one per device, keyed by its device ID. Qt-free.

What a node knows of a device is spread over its connections, the election (what
devices said of themselves, where they listen), the dials in flight and their last
failures; `PeerBook.rows` folds that into one row per device, with what this run
remembers of devices that left (their name, where they listened, when they were last
seen and why they went). A row shows:

* where the device listens (never the random port its connection came from);
* its role only while it is connected (an offline device is nobody's server);
* its state with the reason in full: connected, connecting, unreachable (why: the
  last dial's failure), offline (why it left, and when it was last seen);
* its completion: how much of this device's files it still lacks (app.gui.completion);
* its transfer speeds (app.gui.rates).

Addresses that answer for no known device get a row of their own, keyed by address,
never a made-up device ID: a `--peer` address that cannot be reached, an address that
refused our share key, and strangers this node refused (wrong key, locked out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.engine.roles import listening_host
from app.net.peertext import shown_address

if TYPE_CHECKING:
    from app.engine.node import Node
    from app.gui.completion import Need

CONNECTED, CONNECTING, UNREACHABLE, OFFLINE, REFUSED = (
    "connected", "connecting", "unreachable", "offline", "refused")
KNOWN_MAX = 256  # devices remembered; identities cost a member nothing, so not all


@dataclass
class _Known:
    name: str = ""
    address: str = ""
    last_seen: float = 0.0  # wall-clock time it was last connected
    left_why: str = ""  # why its last connection closed


def self_address(listen: tuple[str, int] | None) -> str:
    if listen is None:
        return "not listening"
    host = listening_host(listen)
    return f"{host}:{listen[1]}" if host else f"port {listen[1]}, every address"


class PeerBook:
    """What this run remembers of the devices it met; builds the rows of the view."""

    def __init__(self) -> None:
        self.known: dict[str, _Known] = {}

    def left(self, device: str, why: str) -> None:
        """A connection closed: the reason stays on the row until it comes back."""
        k = self.known.setdefault(device, _Known())
        k.left_why = why or "the connection closed"

    def name(self, node: Node, device: str) -> str:
        """The device's name as far as anyone told us; its short ID only as a last resort."""
        peer = node.peers.get(device)
        if peer is not None:
            return peer.conn.info.name
        k = self.known.get(device)
        heard = node.roles.election.heard.get(device) if node.roles is not None else None
        return ((k.name if k else "") or (heard.name if heard else "")
                or node.names.get(device, "") or f"device {device[:7]}")

    def devices(self) -> list[str]:
        return list(self.known)

    def rows(self, node: Node, now: float, rates: dict[str, tuple[float, float]],
             needs: dict[str, Need]) -> list[dict]:
        """This device first, then every other device, then address-only rows."""
        roles = node.roles
        me = {"key": node.device_id, "device_id": node.device_id, "name": node.opts.name,
              "self": True, "address": self_address(node.listen_address),
              "role": roles.role if roles is not None else "", "state": CONNECTED,
              "reason": ""}
        rows = [me]
        for device, peer in list(node.peers.items()):
            k = self.known.setdefault(device, _Known())
            k.name, k.last_seen, k.left_why = peer.conn.info.name, now, ""
            k.address = node.listening_address(device) or k.address
            summary = node.peer_summary(peer)
            rate_in, rate_out = rates.get(device, (0.0, 0.0))
            rows.append(self._row(device, k, needs, role=summary["role"], state=CONNECTED,
                                  address=summary["address"], rate_in=rate_in,
                                  rate_out=rate_out))
        failures = dict(roles.dial_failures) if roles is not None else {}
        claimed: set[str] = set()  # addresses that belong to a device row
        for device in self._offline(node):
            k = self.known.setdefault(device, _Known())
            k.name = self.name(node, device)
            k.address = node.listening_address(device) or k.address
            claimed.add(k.address)
            rows.append(self._offline_row(node, device, k, failures, needs))
        for device in node.peers:
            claimed.add(self.known[device].address)
        for (host, port), failure in failures.items():
            address = f"{host}:{port}"
            if address in claimed:
                continue
            rows.append({"key": f"address {address}", "device_id": "", "name": address,
                         "address": address, "role": "",
                         "state": REFUSED if failure.refused else UNREACHABLE,
                         "reason": _reason(failure.text, address),
                         "last_seen": 0.0})
        self._refused_us(node, rows)
        for r in node.refused_sources():  # strangers turned away: who, and why
            rows.append({"key": f"refused {r['address']}", "device_id": "",
                         "name": r.get("name") or r["address"], "address": r["address"],
                         "role": "",
                         "state": REFUSED, "reason": r["text"], "last_seen": 0.0})
        return rows

    # --- internals -----------------------------------------------------------------
    @staticmethod
    def _refused_us(node: Node, rows: list[dict]) -> None:
        """Devices that refused our key when we dialled them, by the name they gave."""
        by_address = {r["address"]: r for r in rows}
        for r in node.refused_by():
            row = by_address.get(r["address"])
            if row is not None and row["device_id"]:
                continue  # a known device's row says it already (its last dial's failure)
            if row is None:
                row = {"key": f"address {r['address']}", "device_id": "",
                       "address": r["address"], "role": "", "last_seen": 0.0}
                rows.append(row)
                by_address[r["address"]] = row
            row.update(name=r["name"] or r["address"], state=REFUSED, reason=r["text"])

    def _offline(self, node: Node) -> list[str]:
        """Devices known but not connected: met this run, or proven by the election."""
        out = [d for d in self.known if d not in node.peers]
        if node.roles is not None:
            out += [d for d in node.roles.election.heard
                    if d not in node.peers and d not in self.known]
        out = [d for d in out if d != node.device_id]
        if len(self.known) > KNOWN_MAX:  # forget the longest unseen
            for d in sorted(out, key=lambda d: self.known[d].last_seen if d in self.known
                            else 0.0)[:len(self.known) - KNOWN_MAX]:
                self.known.pop(d, None)
                out.remove(d)
        return out

    def _offline_row(self, node: Node, device: str, k: _Known, failures: dict,
                     needs: dict[str, Need]) -> dict:
        roles = node.roles
        addr = _split(k.address)
        failure = failures.get(addr) if addr else None
        if failure is not None and failure.at >= k.last_seen:
            state = REFUSED if failure.refused else UNREACHABLE
            reason = _reason(failure.text, k.address)
        elif roles is not None and ((addr is not None and roles.dialing(addr))
                                    or device in roles.election.alive(time.monotonic())):
            state, reason = CONNECTING, ""
        else:
            state, reason = OFFLINE, k.left_why
        return self._row(device, k, needs, role="", state=state, address=k.address,
                         reason=reason)

    @staticmethod
    def _row(device: str, k: _Known, needs: dict[str, Need], **values) -> dict:
        need = needs.get(device)
        row = {"key": device, "device_id": device, "name": k.name, "reason": "",
               "last_seen": k.last_seen, "rate_in": 0.0, "rate_out": 0.0, **values}
        if need is not None:
            row.update(need_files=need.files, need_bytes=need.bytes,
                       complete=need.fraction)
        return row


def _reason(text: str, address: str) -> str:
    """A dial failure as the row says it: without the address (the row shows it) nor the
    command-line hint, which means nothing in the window."""
    host, _, port = address.rpartition(":")
    return text.removeprefix(f"{shown_address(host, port)}: ").replace(" (wrong --secret)", "")


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else None
