"""Take the README's screenshot of the web demo (docs/web_demo.png) with the model the page would serve.

    python scripts/web_demo_screenshot.py [--checkpoint RUN_OR_FILE] [--out docs/web_demo.png]

Starts ``stargan-v2 serve`` (without ``--checkpoint`` it serves what it serves by default: the newest demo run,
else the demo model shipped with the package), uploads a cat of the built-in dataset, translates it to the dog
domain with seed 3, asks for more variations and saves a full-page screenshot. Needs Chromium on the PATH (or
``STARGAN_V2_CHROMIUM``) and Playwright (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from stargan_v2.assets import example_sources


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"stargan-v2 serve exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"stargan-v2 serve did not answer at {url}")


def main() -> None:
    """Serve, drive the page, save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a run directory or EMA file (default: what serve picks)")
    parser.add_argument("--out", default="docs/web_demo.png")
    args = parser.parse_args()
    chromium = os.environ.get("STARGAN_V2_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("no Chromium: run .ci/install-chromium or set STARGAN_V2_CHROMIUM")
    examples = Path(tempfile.mkdtemp()) / "examples"
    cat = example_sources(examples, per_domain=1)[0]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "stargan_v2", "serve", "--port", str(port), "--examples", str(examples)]
    command += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    process = subprocess.Popen(command)
    try:
        _wait(url, process)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#source input[type=file]").set_input_files(str(cat))
            page.locator("#domain input").click()
            page.get_by_role("option", name="dog").click()
            page.locator("#seed input").fill("3")
            page.locator("#seed input").press("Tab")
            page.locator("#translate").click()
            page.locator("#result img").wait_for(state="visible", timeout=60_000)
            page.locator("#more").click()
            page.locator("#variations img").nth(7).wait_for(state="visible", timeout=60_000)
            time.sleep(1.0)  # let the thumbnails finish drawing
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
