"""The report in a real browser: headless Chromium loads it offline with no console error, every image
decodes, nothing is fetched from anywhere, and a screenshot is kept as a test artifact.

Chromium is driven over the DevTools protocol with only the standard library: its DevToolsActivePort
file gives the port, http.client finds the page's WebSocket URL, and a minimal RFC 6455 client below
sends commands and collects events. Every step has a deadline; Chromium runs in its own process group
and is killed by its pid when the test ends, whatever happened.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from voipwatch.analyze import analyze_files
from voipwatch.report.data import build_report, from_result
from voipwatch.report.figures import draw_figures
from voipwatch.report.html import write_report
from voipwatch.config import load_settings

pytestmark = pytest.mark.browser   # headless chromium

REPO = Path(__file__).resolve().parents[1]
OFFICE = REPO / "sample_captures" / "small-office.pcap"
WIDTH, HEIGHT = 1280, 3000
DEADLINE_S = 90.0                  # the whole browser session
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    pytest.fail("chromium is required for the browser test: install the Debian package `chromium` "
                "(bash scripts/test.sh does)")


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: a client that sends masked text frames and
    reads text frames (fragmented or not), answering pings."""
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, host: str, port: int, path: str, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the WebSocket handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split()[1] == "101", lines[0]
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        assert headers.get("sec-websocket-accept") == accept, "bad Sec-WebSocket-Accept"

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def recv_text(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:                        # ping
                self._send(0xA, payload)
                continue
            if opcode == 0xA:                        # pong
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            parts.append(payload)
            if b0 & 0x80:                            # FIN
                return b"".join(parts).decode("utf-8")

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


class DevTools:
    """Commands with ids; every event that arrives meanwhile is kept in `events`."""

    def __init__(self, ws: WebSocket, deadline: float):
        self.ws, self.deadline, self.next_id, self.events = ws, deadline, 0, []

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the browser session ran out of time")
        return left

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            self.ws.sock.settimeout(self._remaining())
            msg = json.loads(self.ws.recv_text())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str) -> dict:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        while True:
            self.ws.sock.settimeout(self._remaining())
            msg = json.loads(self.ws.recv_text())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg


def devtools_port(user_data: Path, proc: subprocess.Popen, deadline: float) -> int:
    port_file = user_data / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if exited(proc):
            raise RuntimeError("chromium exited before DevTools was up (see chromium.log in the test's tmp dir)")
        if port_file.exists():
            first = port_file.read_text().splitlines()[:1]
            if first and first[0].strip().isdigit():
                return int(first[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port in time")


def page_websocket(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/json/list")
            targets = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise TimeoutError("no page target in chromium")


def exited(proc: subprocess.Popen) -> bool:
    """Whether chromium has exited, without reaping it: while it is an unreaped zombie its pid, and so its
    process group id, cannot be reused, so signalling the group by that id reaches only chromium's own."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def stop(proc: subprocess.Popen) -> None:
    """End chromium and its helpers (zygote, renderer, GPU: its process group, which it leads since
    start_new_session) by chromium's pid: SIGTERM, up to 5 s, then SIGKILL; reap it last."""
    if proc.returncode is None:
        try:
            if not exited(proc):
                os.killpg(proc.pid, signal.SIGTERM)
                until = time.monotonic() + 5
                while not exited(proc) and time.monotonic() < until:
                    time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def browse(chromium: str, page: Path, workdir: Path) -> dict:
    """Load `page` in headless Chromium; return console problems, requests, image states and a screenshot."""
    deadline = time.monotonic() + DEADLINE_S
    user_data = workdir / "chromium-profile"
    user_data.mkdir()
    log = open(workdir / "chromium.log", "wb")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={user_data}", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ws = None
    try:
        port = devtools_port(user_data, proc, deadline)
        url = page_websocket(port, deadline)
        host_port, path = url.split("://", 1)[1].split("/", 1)
        ws = WebSocket("127.0.0.1", int(host_port.rsplit(":", 1)[1]), "/" + path, timeout=10)
        cdp = DevTools(ws, deadline)
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                 mobile=False)
        nav = cdp.call("Page.navigate", url=page.resolve().as_uri())
        assert not nav.get("errorText"), nav
        cdp.wait_for("Page.loadEventFired")
        images = cdp.call("Runtime.evaluate", returnByValue=True, expression=(
            "Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth, "
            "height: i.naturalHeight, scheme: i.currentSrc.split(':')[0], alt: i.alt}))"))["result"]["value"]
        facts = cdp.call("Runtime.evaluate", returnByValue=True, expression=(
            "({title: document.title, sections: Array.from(document.querySelectorAll('section')).map(s => s.id), "
            "scripts: document.scripts.length, height: document.documentElement.scrollHeight})"))["result"]["value"]
        shot = cdp.call("Page.captureScreenshot", format="png")
        try:
            cdp.call("Browser.close")
        except (ConnectionError, OSError, RuntimeError):
            pass
        events = cdp.events
    finally:
        if ws is not None:
            ws.close()
        stop(proc)
        log.close()
    problems = []
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            problems.append(("console", p.get("type"), [a.get("value") for a in p.get("args", [])]))
        elif ev["method"] == "Runtime.exceptionThrown":
            problems.append(("exception", p.get("exceptionDetails", {}).get("text")))
        elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            problems.append(("log", p["entry"].get("source"), p["entry"].get("text")))
        elif ev["method"] == "Network.loadingFailed":
            problems.append(("network", p.get("errorText"), p.get("blockedReason")))
    requests = [ev["params"]["request"]["url"] for ev in events if ev["method"] == "Network.requestWillBeSent"]
    return {"problems": problems, "requests": requests, "images": images, "facts": facts,
            "screenshot": base64.b64decode(shot["data"])}


@pytest.fixture(scope="module")
def office_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = analyze_files([str(OFFICE)], load_settings())
    data = from_result(result)
    report = build_report(data)
    write_report(report, draw_figures(data, report), out)
    return out


def test_report_renders_in_chromium(chromium, office_report, tmp_path):
    started = time.monotonic()
    seen = browse(chromium, office_report, tmp_path)
    assert time.monotonic() - started < DEADLINE_S + 20
    assert seen["problems"] == [], seen["problems"]
    # only the page itself was loaded: the images are data: URIs, nothing goes to the network
    assert all(url.split(":", 1)[0] in ("file", "data") for url in seen["requests"]), seen["requests"]
    assert any(url.startswith("file:") for url in seen["requests"])
    images = seen["images"]
    assert len(images) == office_report.read_text().count("<img ")
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
        assert img["scheme"] == "data" and img["alt"]
    facts = seen["facts"]
    assert facts["scripts"] == 0
    assert facts["sections"] == ["summary", "incidents", "findings", "calls", "registrations", "streams", "network",
                                 "ladder", "anomalies"]         # the incident timeline opens the report
    assert facts["title"].startswith("voipwatch report")
    # the screenshot: a test artifact to look at
    shot = tmp_path / "report-screenshot.png"
    shot.write_bytes(seen["screenshot"])
    with PILImage.open(io.BytesIO(seen["screenshot"])) as im:
        assert im.size == (WIDTH, HEIGHT)
        # not a blank page: the top bar is dark, the page background light
        assert sum(im.convert("L").getpixel((5, 5)) for _ in range(1)) < 80
        assert im.convert("L").getpixel((WIDTH // 2, HEIGHT - 5)) > 200
    print(f"\nscreenshot of the report: {shot} (page {facts['height']} px tall)")
