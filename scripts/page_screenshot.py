"""Screenshot of the chat page answering a question with its source open (the README's docs/page.png).

Usage: start the service (`rag serve`), then
    .venv/bin/python scripts/page_screenshot.py [--url http://127.0.0.1:8000] [--question ...] [--out docs/page.png]
Drives Debian's /usr/bin/chromium through playwright; needs fonts-wqy-microhei for the Chinese text;
shrinks the PNG with pngquant when it is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--question", default="阳山县在清远市八个县（市、区）中排名第几？")
    parser.add_argument("--out", type=Path, default=Path("docs/page.png"))
    args = parser.parse_args()
    expect.set_options(timeout=180_000)  # the first answer of a real model on a busy machine
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720}, locale="zh-CN")
        page.set_default_timeout(180_000)
        page.goto(args.url + "/")
        expect(page.locator("#doc-list .doc").first).to_be_visible()
        page.locator("#question").fill(args.question)
        page.locator("#question").press("Enter")
        answer = page.locator(".msg.assistant").last
        expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"))
        answer.locator("button.cite").first.click()
        expect(page.locator("#source-text mark.hit")).to_be_in_viewport()
        page.mouse.move(0, 0)
        answer.locator("button.cite").first.hover()
        expect(page.locator("#tip")).to_be_visible()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    if shutil.which("pngquant"):  # a palette of text colours: a third of the size, no visible change
        out = str(args.out)
        subprocess.run(["pngquant", "--quality=60-85", "--speed=1", "--force", "--output", out, out], check=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
