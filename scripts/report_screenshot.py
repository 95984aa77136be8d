"""The README's picture of the report: the top of a run's report.html as a PNG.

1. run the main job on the embedded toy model (the README's first command) into ``--run``,
   unless it already holds a report;
2. open ``report.html`` in headless Chromium, check that it loads with no console error
   and that every figure is drawn, and capture the top ``--height`` pixels (1200 wide).

    python scripts/report_screenshot.py --run runs/default --out docs/toy_report.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--run", default="runs/default", help="run folder (made if it has no report)")
    ap.add_argument("--out", default="docs/toy_report.png", help="the PNG to write")
    ap.add_argument("--height", type=int, default=2300, help="pixels from the top of the page")
    args = ap.parse_args()
    run_dir = Path(args.run)
    if not (run_dir / "report.html").exists():
        from auto_circuit_dcd.job.pipeline import RunConfig, run

        run(RunConfig(out=str(run_dir)), progress=True)
    from auto_circuit_dcd.report.browser import check_page

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    seen = check_page(run_dir / "report.html", screenshot=args.out, height=args.height)
    print(f"{args.out}: {seen.drawn} of {seen.figures} figures drawn, "
          f"{len(seen.errors)} console errors")
    return 0 if not seen.errors and seen.drawn == seen.figures else 1


if __name__ == "__main__":
    sys.exit(main())
