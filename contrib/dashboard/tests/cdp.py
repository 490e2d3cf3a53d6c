"""A tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket
library needed): headless Chromium reads commands on fd 3 and answers on fd 4, one JSON
message per NUL-terminated frame.  Enough to open a page, evaluate JavaScript and take a
screenshot."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

INSTALL_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "install-test-tools.sh"


def chromium_path() -> str:
    """Chromium, installed by the project's script when missing (Debian's package)."""
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=900)
        path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed and scripts/install-test-tools.sh failed")
    return path


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, width: int = 1280, height: int = 1400, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="obs-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        args = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        # Map our pipe ends onto fds 3 and 4 in the child.
        shell = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}'
        self.proc = subprocess.Popen(["bash", "-c", shell, "chromium", *args],
                                     pass_fds=(to_child_r, from_child_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None
        self.width, self.height = width, height

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 65536)
                if not chunk:
                    raise CdpError("chromium closed the debugging pipe")
                self._buf += chunk
        frame, self._buf = self._buf.split(b"\0", 1)
        return json.loads(frame)

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                       "flatten": True}, session=False)
        self.session = attached["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise CdpError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        end = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CdpError as exc:  # the page is still loading (elements not there yet)
                value, error = None, exc
            else:
                error = None
            if value:
                return value
            if time.monotonic() > end:
                raise CdpError(f"still false after {timeout} s: {expression} ({error})")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> None:
        res = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(res["data"]))

    def close(self) -> None:
        try:
            os.close(self._w)
            os.close(self._r)
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
