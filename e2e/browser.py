"""Headless Chromium for the browser tests and the UI benchmark: Debian's, not Playwright's.

Playwright's own browser download is not used (closed networks); `make browser` installs
Debian's chromium. These flags keep it from calling home and let it run as root.
"""
import os
from pathlib import Path

CHROMIUM = os.environ.get("RILL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def launch(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
