"""The drawing page and /docs in a real headless Chromium (Debian's), against real uvicorn."""

import base64
import io
import shutil
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import running_server
from tests.helpers import REPO_ROOT

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="Debian's chromium-driver is not installed"),
]
ARTIFACTS = REPO_ROOT / "artifacts"
NO_PREDICTION = "\N{EN DASH}"  # what the page shows in place of a digit


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


def test_page_loads_without_console_errors(browser, base_url):
    browser.get(f"{base_url}/")
    WebDriverWait(browser, 10).until(lambda driver: driver.execute_script("return !!window.digitPad"))
    assert browser.title == "mnist-serve: draw a digit"
    canvas = browser.find_element(By.ID, "pad")
    assert int(canvas.get_attribute("width")) >= 280
    assert canvas.size["width"] == canvas.size["height"]
    assert browser.find_element(By.LINK_TEXT, "API documentation").get_attribute("href").endswith("/docs")
    assert _console_errors(browser) == []


def test_a_vertical_stroke_drawn_with_the_pointer_is_a_one(page, base_url):
    canvas = page.find_element(By.ID, "pad")
    completed = page.execute_script("return window.digitPad.completed")
    height = canvas.size["height"]
    # Offsets are from the canvas centre: a line from 35 % to 65 % of its height.
    ActionChains(page).move_to_element_with_offset(canvas, 0, -height * 0.3).click_and_hold().move_by_offset(
        0, height * 0.2
    ).move_by_offset(0, height * 0.2).move_by_offset(0, height * 0.2).release().perform()
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
    assert page.find_element(By.ID, "uploaded").is_displayed()


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
