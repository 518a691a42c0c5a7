"""The page at / in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium uploads and drops image files and reads the bars the page draws.

Skipped with the reason where Chromium, ChromeDriver or Selenium is missing, except under
CI (``CI`` set), where that is a failure: .ci/run installs them.
"""

import base64
import os
import shutil

import numpy as np
import pytest
from conftest import start_server, stop_server
from PIL import Image

from trainer.datasets import CIFAR10_NAMES
from trainer.images import open_image

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',  # a small /dev/shm in containers crashes tabs
    '--window-size=1000,1000',
]
WAIT = 30  # seconds for the page to answer


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'needs the selenium package (requirements.txt)'
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f'needs {path} (apt-get install chromium chromium-driver)'
    return None


MISSING = _missing()
if MISSING and os.environ.get('CI'):
    pytest.fail(f'the browser test must run in CI: {MISSING}', pytrace=False)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or '')


@pytest.fixture(scope='module')
def server(predictor):
    server, thread = start_server(predictor)
    yield server
    stop_server(server, thread)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f'--user-data-dir={tmp_path_factory.mktemp("chromium")}']:
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The page, loaded afresh, once it shows the model from /health."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log('browser')  # this test's entries only, from the page's load on
    browser.get(server.url + '/')
    WebDriverWait(browser, WAIT).until(lambda b: 'classes' in text(b, 'model'))
    return browser


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """A real JPEG file: smooth colours, 120x80."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((120, 80), Image.Resampling.BILINEAR)
    path = tmp_path_factory.mktemp('photos') / 'photo.jpg'
    image.save(path, quality=90)
    return path


def text(browser, element_id: str) -> str:
    return browser.find_element('id', element_id).text


def bars(browser, count: int) -> list[dict]:
    """Wait for ``count`` bars; return each one's label, probability, shown text and width."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT).until(
        lambda b: len(b.find_elements('css selector', '#results li.bar')) == count
    )
    return browser.execute_script(
        """return [...document.querySelectorAll('#results li.bar')].map((row) => ({
            label: row.querySelector('.label').textContent,
            probability: Number(row.dataset.probability),
            shown: row.querySelector('.value').textContent,
            width: row.querySelector('.fill').getBoundingClientRect().width /
                   row.querySelector('.track').getBoundingClientRect().width,
        }));"""
    )


def expected(predictor, path, top):
    return [(p.label, p.probability) for p in predictor.predict([open_image(path)], top)[0]]


def test_the_page_shows_the_model_from_health(page):
    assert text(page, 'model') == 'Model SqueezeNet, 10 classes, preset 32'
    assert page.execute_script("return document.getElementById('labels').textContent") == (
        ', '.join(CIFAR10_NAMES)
    )
    assert page.title == 'Image classifier'


def test_uploading_a_file_previews_it_and_draws_the_top_classes(page, predictor, photo):
    page.find_element('id', 'file').send_keys(str(photo))
    drawn = bars(page, 3)
    want = expected(predictor, photo, 3)
    assert [bar['label'] for bar in drawn] == [label for label, _ in want]
    for bar, (_, probability) in zip(drawn, want, strict=True):
        assert bar['probability'] == pytest.approx(probability, abs=1e-12)
        assert bar['shown'] == f'{probability * 100:.1f}%'
        assert bar['width'] == pytest.approx(probability, abs=0.01)  # the bar is drawn to scale
    size = page.execute_script(
        "const p = document.getElementById('preview');"
        'return [p.hidden, p.complete && p.naturalWidth, p.naturalHeight];'
    )
    assert size == [False, 120, 80]
    assert text(page, 'status') == 'photo.jpg'


def test_changing_the_count_asks_again(page, predictor, photo):
    page.find_element('id', 'file').send_keys(str(photo))
    bars(page, 3)
    page.execute_script(
        "const top = document.getElementById('top'); top.value = '5';"
        "top.dispatchEvent(new Event('change'));"
    )
    assert [bar['label'] for bar in bars(page, 5)] == [
        label for label, _ in expected(predictor, photo, 5)
    ]


def test_classes_shown_is_bounded_by_the_class_count(page, predictor, photo):
    """53 typed for a 10-class model asks for the 10 classes, and the box then says 10."""
    page.find_element('id', 'file').send_keys(str(photo))
    bars(page, 3)
    page.execute_script(
        "const top = document.getElementById('top'); top.value = '53';"
        "top.dispatchEvent(new Event('change'));"
    )
    assert [bar['label'] for bar in bars(page, 10)] == [
        label for label, _ in expected(predictor, photo, 10)
    ]
    assert page.execute_script("return document.getElementById('top').value") == '10'


def test_dropping_an_image_classifies_it(page, predictor, tmp_path):
    path = tmp_path / 'dropped.png'
    Image.new('RGB', (50, 40), (200, 30, 30)).save(path)
    page.execute_script(
        """const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(
            new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));""",
        base64.b64encode(path.read_bytes()).decode(),
    )
    drawn, want = bars(page, 3), expected(predictor, path, 3)
    assert [bar['label'] for bar in drawn] == [label for label, _ in want]
    assert [bar['probability'] for bar in drawn] == pytest.approx([p for _, p in want])


def test_a_file_that_is_not_an_image_shows_the_services_reason(page, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    path = tmp_path / 'notes.png'
    path.write_text('not really a picture')
    page.find_element('id', 'file').send_keys(str(path))
    WebDriverWait(page, WAIT).until(lambda b: 'not an image' in text(b, 'status'))
    status = page.find_element('id', 'status')
    assert 'error' in status.get_attribute('class').split()
    assert page.find_elements('css selector', '#results li.bar') == []


def test_the_page_logs_no_errors(page, photo):
    """No failed loads, no Content-Security-Policy violations, no script errors."""
    page.find_element('id', 'file').send_keys(str(photo))
    bars(page, 3)
    severe = [entry for entry in page.get_log('browser') if entry['level'] == 'SEVERE']
    assert severe == []


def test_image_bytes_round_trip_through_the_file_input(page, tmp_path, predictor):
    """A PNG with transparency and an odd size, as a user's screenshot might be."""
    rgba = np.zeros((33, 71, 4), np.uint8)
    rgba[:, :35] = (20, 120, 220, 255)
    path = tmp_path / 'screenshot.png'
    Image.fromarray(rgba, 'RGBA').save(path)
    page.find_element('id', 'file').send_keys(str(path))
    drawn = bars(page, 3)
    assert [bar['label'] for bar in drawn] == [label for label, _ in expected(predictor, path, 3)]
