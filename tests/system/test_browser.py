"""The drawing page, /docs and /redoc in a real headless Chromium (Debian's), against real uvicorn."""

import base64
import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import running_server
from tests.helpers import REPO_ROOT

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="Debian's chromium-driver is not installed"),
]
ARTIFACTS = REPO_ROOT / "artifacts"
NO_PREDICTION = "\N{EN DASH}"  # what the page shows in place of a digit
MAX_UPLOAD_BYTES = 1024 * 1024  # the server's default limit, which the page is told
# ReDoc's sidebar footer shows Redocly's logo from their CDN; offline it fails and ReDoc hides it.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def base_url():
    with running_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="mnist-serve-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1000,900",
        # Every host but the test server is unresolvable: the pages must work offline.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, base_url):
    browser.get(f"{base_url}/")
    WebDriverWait(browser, 10).until(lambda driver: driver.execute_script("return !!window.digitPad"))
    browser.get_log("browser")  # start each test with an empty console
    return browser


def _wait_for_answer(driver, completed_before: int) -> None:
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.digitPad.completed") > completed_before)


def _shown_class(driver) -> str:
    return driver.find_element(By.ID, "digit").text


def _last_upload(driver) -> bytes:
    """The exact bytes the page posted, read back from the page."""
    encoded = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const reader = new FileReader();
        reader.onload = () => done(reader.result.split(",")[1]);
        reader.readAsDataURL(window.digitPad.lastUpload);"""
    )
    return base64.b64decode(encoded)


def _answer_for(base_url: str, data: bytes) -> dict:
    return httpx.post(f"{base_url}/predict", files={"file": ("sent.png", data)}).json()


def _console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _answer_with(driver, answer: dict) -> None:
    """From now on, the page's POST /predict gets this answer without asking the server."""
    driver.execute_script(
        """const answer = arguments[0];
        window.fetch = async () => new Response(JSON.stringify(answer), {
          status: 200, headers: {"Content-Type": "application/json"},
        });""",
        answer,
    )


def _scores(lead: int, lead_score: float, runner_up: int, runner_up_score: float) -> list[float]:
    rest = (1 - lead_score - runner_up_score) / 8
    return [lead_score if d == lead else runner_up_score if d == runner_up else rest for d in range(10)]


@contextmanager
def _phone_screen(driver, width: int = 360, height: int = 640) -> Iterator[None]:
    """Emulate a phone's viewport (CSS pixels, touch-sized layout) exactly, whatever the window."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _is_in_viewport(driver, element_id: str) -> bool:
    return driver.execute_script(
        """const box = document.getElementById(arguments[0]).getBoundingClientRect();
        return box.top >= 0 && box.left >= 0 && box.bottom <= innerHeight && box.right <= innerWidth;""",
        element_id,
    )


def _draw_vertical_stroke(driver) -> None:
    """A real pointer stroke from 35 % to 65 % of the canvas height (offsets are from its centre)."""
    canvas = driver.find_element(By.ID, "pad")
    height = canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(canvas, 0, -height * 0.3).click_and_hold().move_by_offset(
        0, height * 0.2
    ).move_by_offset(0, height * 0.2).move_by_offset(0, height * 0.2).release().perform()


def _events_of_the_drawing(driver) -> None:
    """Log, in the page, when strokes start and end, when /predict is called and what #digit shows."""
    driver.execute_script(
        """window.drawingEvents = [];
        const log = (what) => window.drawingEvents.push([what, performance.now()]);
        const pad = document.getElementById("pad");
        pad.addEventListener("pointerdown", () => log("down"));
        pad.addEventListener("pointerup", () => log("up"));
        const realFetch = window.fetch;
        window.fetch = (...args) => { log("fetch"); return realFetch(...args); };
        const digit = document.getElementById("digit");
        new MutationObserver(() => log(`shows ${digit.textContent}`))
          .observe(digit, {childList: true, characterData: true, subtree: true});"""
    )


def _photo_of_a_seven(path: Path, width: int, height: int, sideways: bool = False) -> None:
    """A dark 7 on grey, grainy paper, saved as a JPEG as a phone camera would; `sideways` stores
    the pixels turned a quarter and says in EXIF how to turn them upright, as phones held upright do."""
    paper = np.random.default_rng(0).normal(225, 12, (height, width)).clip(0, 255).astype(np.uint8)
    photo = Image.fromarray(paper).convert("RGB")
    scale = height / 3024
    corners = [(1500 * scale, 700 * scale), (2500 * scale, 700 * scale), (1900 * scale, 2400 * scale)]
    ImageDraw.Draw(photo).line(corners, fill=(40, 40, 50), width=round(200 * scale), joint="curve")
    exif = Image.Exif()
    if sideways:
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to display
    photo.save(path, quality=92, exif=exif)


def test_page_loads_without_console_errors(browser, base_url):
    browser.get(f"{base_url}/")
    WebDriverWait(browser, 10).until(lambda driver: driver.execute_script("return !!window.digitPad"))
    assert browser.title == "mnist-serve: draw a digit"
    canvas = browser.find_element(By.ID, "pad")
    assert int(canvas.get_attribute("width")) >= 280
    assert canvas.size["width"] == canvas.size["height"]
    assert browser.find_element(By.LINK_TEXT, "API documentation").get_attribute("href").endswith("/docs")
    assert browser.find_element(By.LINK_TEXT, "ReDoc").get_attribute("href").endswith("/redoc")
    assert _console_errors(browser) == []


def test_a_vertical_stroke_drawn_with_the_pointer_is_a_one(page, base_url):
    completed = page.execute_script("return window.digitPad.completed")
    _draw_vertical_stroke(page)
    _wait_for_answer(page, completed)
    sent = _last_upload(page)
    assert Image.open(io.BytesIO(sent)).size == (280, 280)
    assert _shown_class(page) == str(_answer_for(base_url, sent)["class"]) == "1"
    ARTIFACTS.mkdir(exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "drawing-page.png"))
    assert _console_errors(page) == []


def _strokes_from_digit(pixels: np.ndarray) -> list[list[list[float]]]:
    """Replay a 28x28 digit as pen dots: one dot at the centre of each inked pixel, 10x scale."""
    rows, cols = np.nonzero(pixels > 128)
    return [[[float(col) * 10 + 5, float(row) * 10 + 5]] for row, col in zip(rows, cols, strict=True)]


def test_a_real_mnist_digit_replayed_through_the_drawing_api(page, base_url):
    pixels = np.asarray(Image.open(REPO_ROOT / "samples" / "2.png"))
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes(arguments[0])", _strokes_from_digit(pixels))
    _wait_for_answer(page, completed)
    shown = _shown_class(page)
    assert shown == str(_answer_for(base_url, _last_upload(page))["class"])
    assert shown == "2"
    bars = page.find_elements(By.CSS_SELECTOR, "#scores li")
    assert len(bars) == 10
    assert bars[2].get_attribute("class") == "best"


def test_the_chosen_model_answers_and_the_page_says_which_version_did(page, base_url):
    index = httpx.get(f"{base_url}/models").json()
    newest = {model["name"]: model["default_version"] for model in index["models"]}
    WebDriverWait(page, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == len(newest))
    offered = [option.get_attribute("value") for option in page.find_elements(By.CSS_SELECTOR, "#model option")]
    assert offered[0] == ""  # the server's default model
    assert set(offered[1:]) == set(newest) - {index["default_model"]}
    pixels = np.asarray(Image.open(REPO_ROOT / "samples" / "2.png"))
    for choice, answering in (("mnist-reference", "mnist-reference"), ("", index["default_model"])):
        completed = page.execute_script("return window.digitPad.completed")
        Select(page.find_element(By.ID, "model")).select_by_value(choice)
        if completed == 0:
            page.execute_script("window.digitPad.drawStrokes(arguments[0])", _strokes_from_digit(pixels))
        _wait_for_answer(page, completed)  # a new choice judges the drawing on show again
        answered_by = page.find_element(By.ID, "answered-by").text
        assert answered_by == f"Answered by {answering}, version {newest[answering]}"
        assert _shown_class(page) == "2"
    assert _console_errors(page) == []


def test_the_page_shows_the_image_the_network_was_given(page, base_url):
    pixels = np.asarray(Image.open(REPO_ROOT / "samples" / "2.png"))
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes(arguments[0])", _strokes_from_digit(pixels))
    _wait_for_answer(page, completed)
    seen = page.find_element(By.ID, "seen")
    assert seen.is_displayed()
    answer = httpx.post(
        f"{base_url}/predict", params={"show_input": "true"}, files={"file": ("canvas.png", _last_upload(page))}
    ).json()
    assert seen.get_attribute("src") == answer["input_image"]
    shown = Image.open(io.BytesIO(base64.b64decode(answer["input_image"].split(",", 1)[1])))
    assert shown.size == (28, 28)
    page.find_element(By.ID, "clear").click()
    assert not page.find_element(By.ID, "seen").is_displayed()


def test_clear_empties_the_canvas_and_the_display(page):
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes([[[140, 40], [140, 240]]])")
    _wait_for_answer(page, completed)
    assert _shown_class(page) == "1"
    page.find_element(By.ID, "clear").click()
    assert page.execute_script("return window.digitPad.isBlank()")
    assert _shown_class(page) == NO_PREDICTION
    assert page.find_elements(By.CSS_SELECTOR, "#scores li") == []


def test_an_empty_canvas_gives_a_clear_message_without_asking_the_server(page):
    page.find_element(By.ID, "clear").click()
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes([])")
    assert page.find_element(By.ID, "message").text == "The canvas is empty: draw a digit first."
    assert page.execute_script("return window.digitPad.completed") == completed


def test_uploading_samples_3_shows_a_3(page):
    completed = page.execute_script("return window.digitPad.completed")
    page.find_element(By.ID, "upload").send_keys(str(REPO_ROOT / "samples" / "3.png"))
    _wait_for_answer(page, completed)
    assert _shown_class(page) == "3"
    WebDriverWait(page, 10).until(lambda d: d.find_element(By.ID, "uploaded").is_displayed())


def test_a_file_that_is_no_image_shows_the_refusal_without_a_broken_picture(page, tmp_path: Path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping: milk, eggs\n")
    completed = page.execute_script("return window.digitPad.completed")
    page.find_element(By.ID, "upload").send_keys(str(notes))
    _wait_for_answer(page, completed)
    assert page.find_element(By.ID, "message").text.startswith("not a recognised image")
    WebDriverWait(page, 10).until(lambda d: d.execute_script("return document.getElementById('uploaded').complete"))
    assert not page.find_element(By.ID, "uploaded").is_displayed()


def test_a_server_refusal_is_shown_as_a_message(page, tmp_path: Path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    completed = page.execute_script("return window.digitPad.completed")
    page.find_element(By.ID, "upload").send_keys(str(blank))
    _wait_for_answer(page, completed)
    assert page.find_element(By.ID, "message").text.startswith("no digit found")
    assert _shown_class(page) == NO_PREDICTION


def test_clear_and_upload_are_reachable_with_the_keyboard(page):
    page.find_element(By.TAG_NAME, "body").click()
    reached = []
    for _ in range(6):
        ActionChains(page).send_keys(Keys.TAB).perform()
        reached.append(page.switch_to.active_element.get_attribute("id"))
    assert "clear" in reached
    assert "upload" in reached


def test_phone_sized_screen_keeps_the_canvas_on_screen(page):
    page.set_window_size(390, 844)
    try:
        canvas = page.find_element(By.ID, "pad")
        viewport_width = page.execute_script("return document.documentElement.clientWidth")
        assert canvas.location["x"] + canvas.size["width"] <= viewport_width
        assert page.execute_script("return document.documentElement.scrollWidth") <= viewport_width
    finally:
        page.set_window_size(1000, 900)


def test_docs_render_offline_with_a_file_picker_for_predict(browser, base_url):
    browser.get(f"{base_url}/docs")
    wait = WebDriverWait(browser, 20)
    operation = wait.until(lambda d: d.find_element(By.ID, "operations-prediction-predict_predict_post"))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda d: operation.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
    file_input = wait.until(lambda d: operation.find_element(By.CSS_SELECTOR, "input[type=file]"))
    assert file_input.is_displayed()
    assert _console_errors(browser) == []


def test_redoc_renders_offline_from_the_apps_own_bundle(browser, base_url):
    browser.get(f"{base_url}/redoc")
    wait = WebDriverWait(browser, 20)
    title = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "h1"))
    assert title.text.startswith("mnist-serve")
    wait.until(lambda d: "Classify one digit image" in d.find_element(By.TAG_NAME, "body").text)
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map((entry) => entry.name)")
    assert f"{base_url}/static/vendor/redoc/redoc.standalone.js" in loaded
    assert [url for url in loaded if not url.startswith(base_url)] in ([], [REDOC_LOGO])
    assert [error for error in _console_errors(browser) if REDOC_LOGO not in error["message"]] == []


def test_a_two_stroke_seven_is_judged_after_the_pause_not_after_its_bar(page, base_url):
    pause_ms = page.execute_script("return STROKE_PAUSE_MS")
    _events_of_the_drawing(page)
    canvas = page.find_element(By.ID, "pad")
    size = canvas.size["width"]

    def to(x: float, y: float) -> tuple[float, float]:  # fractions of the canvas, from its centre
        return x * size, y * size

    completed = page.execute_script("return window.digitPad.completed")
    strokes = ActionChains(page, duration=20)
    strokes.move_to_element_with_offset(canvas, *to(-0.3, -0.3)).click_and_hold()
    for step in range(1, 6):  # the bar, left to right
        strokes.move_to_element_with_offset(canvas, *to(-0.3 + 0.11 * step, -0.3))
    strokes.release().pause(0.25).click_and_hold()  # a pen lift shorter than the pause
    for step in range(1, 8):  # the stem, down to the lower left
        strokes.move_to_element_with_offset(canvas, *to(0.25 - 0.3 * step / 7, -0.3 + 0.65 * step / 7))
    strokes.release().perform()
    _wait_for_answer(page, completed)

    events = page.execute_script("return window.drawingEvents")
    assert [name for name, _ in events] == ["down", "up", "down", "up", "fetch", "shows 7"]
    times = {f"{name} {index}": at for index, (name, at) in enumerate(events)}
    assert times["down 2"] - times["up 1"] < pause_ms  # the test did lift the pen only briefly
    assert times["fetch 4"] - times["up 3"] >= pause_ms
    assert _shown_class(page) == str(_answer_for(base_url, _last_upload(page))["class"]) == "7"
    assert "100.0 %" not in page.find_element(By.ID, "result").text + page.find_element(By.ID, "scores").text
    assert _console_errors(page) == []


@pytest.mark.parametrize("sideways", [False, True], ids=["upright", "exif-rotated"])
def test_a_phone_photo_over_the_upload_limit_is_shrunk_in_the_browser(page, base_url, tmp_path: Path, sideways):
    photo = tmp_path / "IMG_0001.jpg"
    _photo_of_a_seven(photo, 4032, 3024, sideways)
    assert photo.stat().st_size > MAX_UPLOAD_BYTES
    assert page.execute_script("return maxUploadBytes") == MAX_UPLOAD_BYTES
    completed = page.execute_script("return window.digitPad.completed")
    page.find_element(By.ID, "upload").send_keys(str(photo))
    _wait_for_answer(page, completed)
    assert page.find_element(By.ID, "message").text == ""
    sent = _last_upload(page)
    assert len(sent) <= MAX_UPLOAD_BYTES
    with Image.open(io.BytesIO(sent)) as shrunk:  # upright: the page applied the EXIF orientation
        assert (shrunk.format, shrunk.size) == ("JPEG", (1024, 768))
    assert _shown_class(page) == str(_answer_for(base_url, sent)["class"]) == "7"
    assert _console_errors(page) == []


def test_the_page_shrinks_to_the_limit_the_server_is_configured_with(browser, tmp_path: Path):
    photo = tmp_path / "small-photo.jpg"
    _photo_of_a_seven(photo, 800, 600)
    limit = photo.stat().st_size // 2
    with running_server(max_upload_bytes=limit) as url:
        browser.get(f"{url}/")
        WebDriverWait(browser, 10).until(lambda driver: driver.execute_script("return !!window.digitPad"))
        assert browser.execute_script("return maxUploadBytes") == limit
        browser.find_element(By.ID, "upload").send_keys(str(photo))
        _wait_for_answer(browser, 0)
        assert browser.find_element(By.ID, "message").text == ""
        assert len(_last_upload(browser)) <= limit
        assert _shown_class(browser) != NO_PREDICTION


def test_a_picture_over_the_limit_the_browser_cannot_open_gets_a_message(page, tmp_path: Path):
    scan = tmp_path / "scan.tiff"  # browsers do not decode TIFF, so the page cannot shrink it
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)).save(scan)
    assert scan.stat().st_size > MAX_UPLOAD_BYTES
    completed = page.execute_script("return window.digitPad.completed")
    page.find_element(By.ID, "upload").send_keys(str(scan))
    WebDriverWait(page, 10).until(lambda d: d.find_element(By.ID, "message").text)
    assert page.find_element(By.ID, "message").text == (
        "scan.tiff is 1.2 MiB, over the 1.0 MiB upload limit, and this browser could not make it smaller: "
        "send a PNG or JPEG under the limit."
    )
    assert _shown_class(page) == NO_PREDICTION
    assert page.execute_script("return window.digitPad.completed") == completed  # nothing was sent


def test_a_360_px_phone_shows_the_prediction_without_scrolling(page):
    with _phone_screen(page):
        assert page.execute_script("return document.documentElement.clientWidth") == 360
        assert _is_in_viewport(page, "pad")  # drawable where it is
        completed = page.execute_script("return window.digitPad.completed")
        _draw_vertical_stroke(page)
        _wait_for_answer(page, completed)
        assert _shown_class(page) != NO_PREDICTION  # which digit is the other tests' business
        assert page.execute_script("return window.scrollY") == 0
        assert _is_in_viewport(page, "digit")
        assert _is_in_viewport(page, "confidence")
        assert page.execute_script("return document.documentElement.scrollWidth") <= 360
        ARTIFACTS.mkdir(exist_ok=True)
        page.save_screenshot(str(ARTIFACTS / "drawing-page-360px.png"))


def test_an_unsure_answer_names_the_two_likeliest_digits(page):
    # Fields the page does not know (a served model's name and version) are ignored.
    unsure = {
        "class": 4,
        "confidence": 0.55,
        "scores": _scores(4, 0.55, 9, 0.35),
        "verdict": "unsure",
        "model": "mnist",
        "version": "2",
    }
    _answer_with(page, unsure)
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes([[[60, 60], [220, 60]]])")
    _wait_for_answer(page, completed)
    assert _shown_class(page) == "?"
    assert page.find_element(By.ID, "confidence").text == "Not sure: maybe 4 or 9"
    assert page.find_element(By.ID, "digit").get_attribute("data-state") == "unsure"
    ARTIFACTS.mkdir(exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "drawing-page-unsure.png"))

    # The server decides: the same confidence with the verdict "digit" is shown as a digit.
    _answer_with(page, {**unsure, "verdict": "digit"})
    completed = page.execute_script("return window.digitPad.completed")
    page.execute_script("window.digitPad.drawStrokes([[[60, 60], [220, 60]]])")
    _wait_for_answer(page, completed)
    assert _shown_class(page) == "4"
    assert page.find_element(By.ID, "confidence").text == "55.0 % sure"
    assert _console_errors(page) == []


def test_a_drawing_that_is_no_digit_is_answered_so(page):
    completed = page.execute_script("return window.digitPad.completed")
    # A bow-tie: two triangles meeting at a point, as a user drew it when this was filed.
    page.execute_script("window.digitPad.drawStrokes([[[40, 60], [240, 220], [240, 60], [40, 220], [40, 60]]])")
    _wait_for_answer(page, completed)
    assert page.find_element(By.ID, "confidence").text == "That does not look like a digit"
    assert page.find_element(By.ID, "digit").get_attribute("data-state") == "not-a-digit"
    ARTIFACTS.mkdir(exist_ok=True)
    page.save_screenshot(str(ARTIFACTS / "drawing-page-not-a-digit.png"))
    assert _console_errors(page) == []


def test_scores_are_never_rounded_to_certainty_and_never_wrap(page):
    scores = [0.0, 1e-9, 0.0004, 0.0006, 0.123, 0.0, 0.0, 0.0, 0.0, 0.0]
    scores[7] = 1.0  # a float32 softmax does round to exactly 1 and 0
    _answer_with(page, {"class": 7, "confidence": 1.0, "scores": scores})
    with _phone_screen(page):
        completed = page.execute_script("return window.digitPad.completed")
        page.execute_script("window.digitPad.drawStrokes([[[140, 40], [140, 240]]])")
        _wait_for_answer(page, completed)
        assert page.find_element(By.ID, "confidence").text == "> 99.9 % sure"
        values = [element.text for element in page.find_elements(By.CSS_SELECTOR, "#scores .value")]
        assert values == ["< 0.1 %"] * 3 + ["0.1 %", "12.3 %"] + ["< 0.1 %"] * 2 + ["> 99.9 %"] + ["< 0.1 %"] * 2
        rows = page.execute_script(
            """return Array.from(document.querySelectorAll("#scores li"), (row) => {
              const lines = document.createRange();
              lines.selectNodeContents(row.querySelector(".value"));
              return {
                height: row.getBoundingClientRect().height,
                oneLine: Math.max(...Array.from(row.children, (part) => parseFloat(getComputedStyle(part).lineHeight))),
                valueLines: lines.getClientRects().length,
              };
            });"""
        )
    assert all(row["valueLines"] == 1 for row in rows)
    assert all(abs(row["height"] - row["oneLine"]) < 1 for row in rows)
