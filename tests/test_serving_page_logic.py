"""The page's own logic without a browser: page.js run by Node.js against a stub DOM.

The browser test (test_serving_page.py) needs Chromium; this one needs only ``node`` and
checks what the page asks the service for, such as the bound on "Classes shown".
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import serving

NODE = shutil.which('node')
PAGE_JS = Path(serving.__file__).parent / 'page' / 'page.js'
pytestmark = pytest.mark.skipif(NODE is None, reason='needs Node.js (node) on the PATH')

# Runs page.js in a VM context whose document, fetch and URL are stubs, then the scenario
# (JavaScript with `page`, the context, and `elements`, the stub elements by id); prints
# the JSON of what the scenario returns.
HARNESS = r"""
const vm = require('vm');
const fs = require('fs');
const [pageFile, scenario] = process.argv.slice(1);
const elements = {};
const element = (id) => elements[id] || (elements[id] = {
  id, value: '', textContent: '', hidden: false, dataset: {}, style: {}, max: '',
  classList: { toggle() {}, add() {}, remove() {} },
  setAttribute() {}, removeAttribute() {}, replaceChildren() {}, append() {},
  addEventListener() {},
});
const requests = [];
const page = {
  document: { getElementById: element, addEventListener() {}, createElement: () => element('x') },
  window: { addEventListener() {} },
  URL: { createObjectURL: () => 'blob:x', revokeObjectURL() {} },
  setTimeout,
  requests,
  fetch: async (url) => {
    requests.push(url);
    const body = url === 'health'
      ? { model: 'm', classes: 10, labels: [], preset: '32', top: 3, max_bytes: 1000 }
      : { predictions: [] };
    return { ok: true, status: 200, json: async () => body };
  },
};
vm.createContext(page);
vm.runInContext(fs.readFileSync(pageFile, 'utf8'), page);
(async () => {
  const result = await vm.runInContext(`(async () => { ${scenario} })()`, page);
  console.log(JSON.stringify({ result, requests, top: element('top').value }));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def run(scenario: str) -> dict:
    done = subprocess.run(
        [NODE, '-e', HARNESS, str(PAGE_JS), scenario],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_classes_shown_is_a_whole_number_from_1_to_the_class_count():
    cases = [('53', 10), ('10', 10), ('3', 10), ('0', 10), ('-4', 10), ('2.7', 10), ('x', 10)]
    cases += [('', 10), ('53', None), ('1e9', 10)]
    got = run(f'return {json.dumps(cases)}.map(([v, n]) => classesShown(v, n ?? undefined));')
    assert got['result'] == [10, 10, 3, 1, 1, 2, 1, 1, 53, 10]


def test_53_classes_for_a_10_class_model_asks_for_10_and_shows_10():
    scenario = """
        await loadHealth();
        document.getElementById('top').value = '53';
        choose({ name: 'cat.png', size: 10, type: 'image/png' });
        await new Promise((resolve) => setTimeout(resolve, 0));
    """
    got = run(scenario)
    assert got['requests'] == ['health', 'predict?top=10']
    assert got['top'] == 10


def test_the_count_is_bounded_even_before_an_image_is_chosen():
    got = run("await loadHealth(); document.getElementById('top').value = '99'; await classify();")
    assert got['requests'] == ['health'] and got['top'] == 10
