"""Screenshots of a rendered reproduction report for the docs, taken in headless Chromium:
the top of the page (docs/report/top.png) and a study's tuning figure with its caption
(docs/report/tuning.png).

    python scripts/report_screenshots.py report            # the report folder of main.sh
    python scripts/report_screenshots.py report --study fmnist_tuning
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "report"


def screenshots(report: Path, study: str, out: Path) -> list[Path]:
    from selenium.webdriver.common.by import By

    from l2dynamics.report.browser import headless_chromium, serve_directory
    from l2dynamics.report.tables import anchor

    out.mkdir(parents=True, exist_ok=True)
    with serve_directory(report) as base, headless_chromium("1280,1100") as driver:
        driver.get(base + "index.html")
        time.sleep(1)
        driver.save_screenshot(str(out / "top.png"))
        section = driver.find_element(By.ID, anchor(study))
        figure = section.find_element(By.TAG_NAME, "figure")
        driver.execute_script("arguments[0].scrollIntoView();", figure)
        time.sleep(0.5)
        figure.screenshot(str(out / "tuning.png"))
    return [out / "top.png", out / "tuning.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="report folder (holds index.html)")
    parser.add_argument("--study", default="fmnist_tuning", help="study whose first figure "
                        "is shot (default: fmnist_tuning)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for path in screenshots(args.report, args.study, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
