"""Regenerate docs/explorer.png: the report's explorer in headless Debian chromium, pointer between two clusters.

Clicks the median z_mean of two classes (0 and 6 by default: adjacent clusters of the default run, and
the line between them morphs one digit into the other), then rests the pointer halfway between them.

    uv run python docs/screenshot_explorer.py [--page reports/explorer.html] [--classes 0 6] [--out docs/explorer.png]
"""

import argparse
import base64
import json
import shutil
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

VIEWPORT = {"width": 900, "height": 1000}


def class_medians(page: Path) -> tuple[dict[int, np.ndarray], list[str]]:
    """Median plotted point of each class, from the data embedded in the page."""
    text = page.read_text(encoding="utf-8")
    data = json.loads(text.split("const EXPLORER_DATA = ", 1)[1].split(";</script>", 1)[0])
    points = np.frombuffer(base64.b64decode(data["points"]), "<f2").astype(np.float64).reshape(-1, 2)
    labels = np.frombuffer(base64.b64decode(data["labels"]), np.uint8)
    return {int(k): np.median(points[labels == k], axis=0) for k in np.unique(labels)}, data["classNames"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=Path("reports/explorer.html"))
    parser.add_argument("--classes", type=int, nargs=2, default=[0, 6], help="two class indices")
    parser.add_argument("--out", type=Path, default=Path("docs/explorer.png"))
    args = parser.parse_args()
    medians, names = class_medians(args.page)
    first, second = args.classes
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(args.page.resolve().as_uri())
        box = page.locator("#latent").bounding_box()

        def at(point: np.ndarray) -> tuple[float, float]:
            x, y = page.evaluate("(a) => explorer.toCanvas(...a)", point.tolist())
            return box["x"] + x, box["y"] + y

        page.mouse.click(*at(medians[first]))
        page.mouse.click(*at(medians[second]))
        page.mouse.move(*at((medians[first] + medians[second]) / 2))
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"{args.out}: pointer between {names[first]} and {names[second]}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
