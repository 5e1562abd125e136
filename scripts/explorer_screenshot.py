"""Make docs/explorer.png: the explorer page in headless Chromium, used the way a person would.

    python scripts/explorer_screenshot.py RUN [--out docs/explorer.png] [--models ae-2d,vae-2d,vae]

RUN: a run folder with the 2-D pair (`vaelab compare`, or vaelab.explore.demo.make_demo_run). The
script shows the chosen models side by side, turns on the holes map (the cached judge; trained once
if absent), drags on the VAE's map, interpolates across the AE's map and samples the AE's prior.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wait(driver, condition: str, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not driver.execute_script(f"return {condition};"):
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {condition}")
        time.sleep(0.1)


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    from vaelab.explore import create_app
    from vaelab.explore.headless import chromium, serve_in_thread

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--out", default="docs/explorer.png")
    ap.add_argument("--models", default="ae-2d,vae-2d,vae", help="panels to show, comma-separated")
    ap.add_argument("--example", type=int, default=5, help="the test example the sliders start from")
    args = ap.parse_args()
    names = args.models.split(",")

    with serve_in_thread(create_app(args.run)) as url, chromium(width=120 + 576 * len(names), height=1080) as d:
        d.get(url + "/")
        wait(d, "document.body.dataset.ready === '1'")
        for box in d.find_elements("css selector", "#model-picker input"):
            if box.is_selected() != (box.get_attribute("value") in names):
                box.click()
        wait(d, f"document.querySelectorAll('.panel[data-ready=\"1\"]').length === {len(names)}")
        idx = d.find_element("id", "example-index")
        idx.clear()
        idx.send_keys(str(args.example), "\n")
        d.find_element("id", "holes-toggle").click()
        wait(d, "[...document.querySelectorAll('.panel')].every(p => p.dataset.holes)")
        panel = {n: d.find_element("css selector", f'.panel[data-model="{n}"]') for n in names}
        for n in names:
            p = panel[n]
            p.find_element("css selector", 'input[data-dim="0"]').send_keys("\ue010")   # End: traverse z1
            wait(d, f"document.querySelector('.panel[data-model=\"{n}\"] .traverse-strip').dataset.n === '11'")
        for name, sampler, drag in (("ae-2d", "sample-prior", False), ("vae-2d", "sample-gmm", True)):
            if name not in panel:
                continue
            p = panel[name]
            p.find_element("css selector", f"button.{sampler}").click()
            p.find_element("css selector", "button.interp").click()
            top = p.find_element("css selector", "canvas.map-top")
            ActionChains(d).move_to_element_with_offset(top, -110, 60).click().perform()
            wait(d, f"window.explorer.state.panels.get('{name}').marks.a !== null")
            ActionChains(d).move_to_element_with_offset(top, 120, -70).click().perform()
            wait(d, f"document.querySelector('.panel[data-model=\"{name}\"] .interp-strip').dataset.n === '10'")
            if drag:
                ActionChains(d).move_to_element_with_offset(top, -60, -40).click_and_hold().move_by_offset(30, 20) \
                    .move_by_offset(25, 15).release().perform()
        time.sleep(0.5)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
