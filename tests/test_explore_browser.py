"""The explorer page in a real browser (Debian's headless Chromium through Selenium, nothing downloaded).

Loads the page on a tiny run, drags on a map, moves a slider, runs an interpolation and samples,
and checks every image the page drew, read back from its canvas, against the server's decode of
the code the page shows.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")
from vaelab.explore.headless import browser_missing  # noqa: E402

REASON = browser_missing()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

from _explore_run import LogisticJudge, make_run  # noqa: E402

MAP = 340


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from vaelab.explore import create_app
    from vaelab.explore.headless import chromium, serve_in_thread

    run = make_run(tmp_path_factory.mktemp("explore-browser"), names=("ae-2d", "vae-2d", "vae-5"))
    app = create_app(run, judge_loader=LogisticJudge)
    with serve_in_thread(app) as url, chromium() as driver:
        driver.get(url + "/")
        wait(driver, "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 2")
        yield driver, url


def wait(driver, condition: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {condition};")
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {condition}; page errors: {page_errors(driver)}")
        time.sleep(0.05)


def page_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def server_image(url: str, model: str, z: list[float]) -> np.ndarray:
    r = post(f"{url}/api/models/{model}/decode", {"z": [z]})
    c, h, w = r["shape"]
    return np.frombuffer(base64.b64decode(r["images"][0]), np.uint8).reshape(h, w, c)[..., 0]


def canvas_grey(driver, selector: str, i: int = 0) -> np.ndarray:
    """The red channel of a canvas the page drew (grey images have r = g = b)."""
    w, h, px = driver.execute_script(
        "const c = document.querySelectorAll(arguments[0])[arguments[1]];"
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
        selector, i)
    return np.array(px, np.uint8).reshape(h, w, 4)[..., 0]


def panel(model: str) -> str:
    return f'.panel[data-model="{model}"]'


def settle(driver, model: str):
    wait(driver, f"document.querySelector('{panel(model)}').dataset.idle === '1' && "
                 f"!window.explorer.state.panels.get('{model}').inflight")


def shown_z(driver, model: str) -> list[float]:
    return json.loads(driver.execute_script(f"return document.querySelector('{panel(model)} canvas.decoded').dataset.z"))


def test_page_loads_both_2d_models_side_by_side(page):
    driver, _ = page
    names = driver.execute_script("return [...document.querySelectorAll('.panel')].map(p => p.dataset.model)")
    assert names == ["ae-2d", "vae-2d"]
    assert driver.execute_script("return document.getElementById('legend').childElementCount") == 10
    assert page_errors(driver) == []


@pytest.mark.parametrize("model", ["vae-2d", "ae-2d"])
def test_drag_on_the_map_decodes_live_and_matches_the_server(page, model):
    from selenium.webdriver.common.action_chains import ActionChains

    driver, url = page
    settle(driver, model)
    before = canvas_grey(driver, f"{panel(model)} canvas.decoded")
    top = driver.find_element("css selector", f"{panel(model)} canvas.map-top")
    # offsets are from the canvas centre; end 100 px right of and 60 px above it
    ActionChains(driver).move_to_element_with_offset(top, -90, 80).click_and_hold() \
        .move_by_offset(60, -40).move_by_offset(60, -40).move_by_offset(70, -60).release().perform()
    settle(driver, model)
    z = shown_z(driver, model)
    after = canvas_grey(driver, f"{panel(model)} canvas.decoded")
    assert not np.array_equal(before, after)                          # the image changed
    np.testing.assert_array_equal(after, server_image(url, model, z))  # and it is the decode of the z shown
    b = driver.execute_script(f"return window.explorer.state.panels.get('{model}').map.bounds")
    per_px = (b["u"][1] - b["u"][0]) / MAP
    assert z[0] == pytest.approx(b["u"][0] + (MAP / 2 + 100) * per_px, abs=1.5 * per_px)   # where the drag ended
    assert z[1] == pytest.approx(b["v"][1] - (MAP / 2 - 60) * per_px, abs=1.5 * per_px)


def test_slider_moves_one_dimension_and_shows_a_traversal(page):
    from selenium.webdriver.common.keys import Keys

    driver, url = page
    model = "vae-2d"
    settle(driver, model)
    z0 = shown_z(driver, model)
    slider = driver.find_element("css selector", f'{panel(model)} input[data-dim="1"]')
    slider.send_keys(Keys.END)                                       # a keyboard move: input + change events
    settle(driver, model)
    z1 = shown_z(driver, model)
    hi = float(slider.get_attribute("max"))
    assert z1[0] == pytest.approx(z0[0], abs=1e-6) and z1[1] == pytest.approx(hi, abs=1e-4)
    np.testing.assert_array_equal(canvas_grey(driver, f"{panel(model)} canvas.decoded"), server_image(url, model, z1))
    wait(driver, f"document.querySelector('{panel(model)} .traverse-strip').dataset.n === '11'")
    last = canvas_grey(driver, f"{panel(model)} .traverse-strip canvas", 10)
    np.testing.assert_array_equal(last, server_image(url, model, [z1[0], hi]))


def test_interpolation_between_two_clicked_points(page):
    from selenium.webdriver.common.action_chains import ActionChains

    driver, url = page
    model = "ae-2d"
    driver.find_element("css selector", f"{panel(model)} button.interp").click()
    top = driver.find_element("css selector", f"{panel(model)} canvas.map-top")
    ActionChains(driver).move_to_element_with_offset(top, -100, -100).click().perform()
    wait(driver, f"window.explorer.state.panels.get('{model}').marks.a !== null")
    ActionChains(driver).move_to_element_with_offset(top, 110, 90).click().perform()
    wait(driver, f"document.querySelector('{panel(model)} .interp-strip').dataset.n === '10'")
    a, b = driver.execute_script(f"const m = window.explorer.state.panels.get('{model}').marks; return [m.a, m.b]")
    strip = [canvas_grey(driver, f"{panel(model)} .interp-strip canvas", i) for i in range(10)]
    r = post(f"{url}/api/models/{model}/interpolate", {"z_a": a, "z_b": b, "n": 10})
    assert np.allclose(r["z"][0], a, atol=1e-5) and np.allclose(r["z"][-1], b, atol=1e-5)
    for i in (0, 4, 9):
        np.testing.assert_array_equal(strip[i], server_image(url, model, r["z"][i]))
    assert not np.array_equal(strip[0], strip[9])


def test_sample_buttons_and_holes_overlay(page):
    driver, url = page
    model = "vae-2d"
    driver.find_element("css selector", f"{panel(model)} button.sample-prior").click()
    wait(driver, f"document.querySelector('{panel(model)} .sample-strip').dataset.n === '10'")
    r = post(f"{url}/api/models/{model}/sample", {"sampler": "prior", "n": 10, "seed": 1})
    np.testing.assert_array_equal(canvas_grey(driver, f"{panel(model)} .sample-strip canvas", 3),
                                  server_image(url, model, r["z"][3]))
    driver.find_element("css selector", f"{panel(model)} button.sample-gmm").click()
    wait(driver, f"document.querySelector('{panel(model)} .sample-strip .label').textContent.includes('GMM')")
    driver.find_element("id", "holes-toggle").click()
    wait(driver, "[...document.querySelectorAll('.panel')].every(p => p.dataset.holes === 'shown')", timeout=120)
    assert page_errors(driver) == []


def test_a_larger_latent_is_explored_through_its_pca_plane(page):
    from selenium.webdriver.common.action_chains import ActionChains

    driver, url = page
    driver.find_element("css selector", '#model-picker input[value="vae-5"]').click()
    wait(driver, f"document.querySelector('{panel('vae-5')}')?.dataset.ready === '1'")
    model = "vae-5"
    settle(driver, model)
    top = driver.find_element("css selector", f"{panel(model)} canvas.map-top")
    ActionChains(driver).move_to_element_with_offset(top, 0, 0).click_and_hold().move_by_offset(40, 30) \
        .release().perform()
    settle(driver, model)
    z = shown_z(driver, model)
    assert len(z) == 5 and len(driver.find_elements("css selector", f"{panel(model)} input[type=range]")) == 5
    np.testing.assert_array_equal(canvas_grey(driver, f"{panel(model)} canvas.decoded"), server_image(url, model, z))
    assert "principal components" in driver.find_element("css selector", f"{panel(model)} .msgs").text


def canvas_rgb(driver, selector: str, i: int = 0) -> np.ndarray:
    """(H, W, 3) of a canvas the page drew."""
    w, h, px = driver.execute_script(
        "const c = document.querySelectorAll(arguments[0])[arguments[1]];"
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
        selector, i)
    return np.array(px, np.uint8).reshape(h, w, 4)[..., :3]


def test_a_colour_model_draws_in_colour_and_a_table_model_as_bars(colour_and_table_run):
    """A run with a colour-image VAE and a table VAE: the page draws the RGB decode in colour and each table row
    as its bar picture, both exactly the server's bytes, with no page error."""
    from vaelab.explore import create_app
    from vaelab.explore.headless import chromium, serve_in_thread

    app = create_app(colour_and_table_run, judge_loader=None)
    with serve_in_thread(app) as url, chromium() as driver:
        driver.get(url + "/")
        wait(driver, "document.querySelectorAll('.panel[data-ready=\"1\"]').length === 2")
        for model in ("colour-vae", "table-vae"):
            settle(driver, model)
            z = shown_z(driver, model)
            r = post(f"{url}/api/models/{model}/decode", {"z": [z]})
            c, h, w = r["shape"]
            want = np.frombuffer(base64.b64decode(r["images"][0]), np.uint8).reshape(h, w, c)
            got = canvas_rgb(driver, f"{panel(model)} canvas.decoded")
            np.testing.assert_array_equal(got, want)
            assert not (np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])), model
        orig = canvas_rgb(driver, f"{panel('colour-vae')} .pair canvas")       # the test image: a coloured disc
        assert (np.abs(orig[..., 0].astype(int) - orig[..., 2]) > 60).mean() > 0.05
        assert "one bar per feature" in driver.find_element("css selector", f"{panel('table-vae')} .msgs").text
        assert page_errors(driver) == []
