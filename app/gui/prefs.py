"""The app's settings, as the Settings dialog edits them. Qt-free.

They live in the config dir's settings.json, changed only through `Config.update`
(under its lock, written atomically), beside the share keys:

* `device_name` and `versions_days` are the device's own, shared with `p2psync run`;
* `app` holds what only the desktop app reads: its listening port, whether it uses
  LAN discovery, and whether closing the window leaves it running in the tray.

Options given on the command line win over these for that run. Start at login is
not stored here: the XDG autostart entry itself says it (app.gui.autostart).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.config import VERSIONS_DAYS, Config

DEFAULT_PORT = 22100  # as `p2psync run` (the contract's --listen default)


@dataclass
class Prefs:
    device_name: str
    listen_port: int = DEFAULT_PORT
    discovery: bool = True
    versions_days: float = VERSIONS_DAYS
    close_to_tray: bool = False

    @classmethod
    def load(cls, config: Config) -> Prefs:
        s = config.settings
        app = s.get("app") if isinstance(s.get("app"), dict) else {}
        port = app.get("listen_port")
        port = port if isinstance(port, int) and not isinstance(port, bool) \
            and 0 < port < 65536 else DEFAULT_PORT
        return cls(device_name=config.device_name(), listen_port=port,
                   discovery=app.get("discovery") is not False,
                   versions_days=config.versions_days(),
                   close_to_tray=app.get("close_to_tray") is True)

    def save(self, config: Config) -> None:
        def change(s: dict) -> None:
            s["device_name"] = self.device_name
            s["versions_days"] = self.versions_days
            app = s.get("app") if isinstance(s.get("app"), dict) else {}
            app.update(listen_port=self.listen_port, discovery=self.discovery,
                       close_to_tray=self.close_to_tray)
            s["app"] = app

        config.update(change)
