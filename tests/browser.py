"""Open a page in headless Chromium (Debian's package; `make test` installs it where it can):
the DOM after its scripts ran, what it wrote to the console, a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
WHY_NOT = (
    "Chromium not found (`make browser` installs Debian's chromium package as root; "
    "`apt-get install chromium` by hand elsewhere)"
)


@dataclass
class Page:
    dom: str  # the document after its scripts ran (--dump-dom)
    console: list[str]  # console messages and uncaught errors of the page
    errors: list[str] = field(default_factory=list)  # Chromium's own lines naming the page


def _run(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="dfscan-chromium-") as profile:
        cmd = [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            *args,
            url,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def open_page(path: Path, fragment: str = "") -> Page:
    """Load ``path`` (a local file) and return its DOM and console output."""
    url = path.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    done = _run(url, "--dump-dom")
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    lines = done.stderr.splitlines()
    console = [line for line in lines if ":CONSOLE" in line]
    return Page(done.stdout, console, [line for line in lines if path.name in line])


def screenshot(path: Path, out: Path, width: int = 1280, height: int = 1600) -> Path:
    done = _run(path.resolve().as_uri(), f"--screenshot={out}", f"--window-size={width},{height}")
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return out


class Cards(HTMLParser):
    """The report's cards as the browser left them: (data attributes, hidden) in page order."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.cards: list[tuple[dict[str, str], bool]] = []
        self.body: dict[str, str | None] = {}
        self.images: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "article" and "card" in (a.get("class") or "").split():
            data = {k[5:]: v or "" for k, v in a.items() if k.startswith("data-")}
            self.cards.append((data, "hidden" in a))
        for name in ("src", "href"):
            if a.get(name):
                self.images.append(a[name])
