"""The tab over a hyperparameter sweep (many runs, crafted in the real stored format), through
TensorBoard's two loaders in Debian's Chromium: runs are listed first and searched with
TensorBoard's run filter, a run's layers come when it is opened, unreadable tags are reported,
and neighbouring steps are loaded in the background so stepping needs no request.
"""

import json
import os
import urllib.parse

import pytest

from tests import browser_helpers as helpers
from tests.test_browser import browser, page, wait_text  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(helpers.CHROMIUM), reason="needs Debian's chromium"),
]

RUNS, LAYERS, STEPS = 60, 6, 12
UNREADABLE = 1  # the run index holding two tags of a future format version


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep")
    helpers.write_sweep(path, RUNS, LAYERS, steps=STEPS, unreadable={UNREADABLE})
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["python_loader", "rust_loader"])
def tensorboard(request, sweep):
    return helpers.serve(request, sweep)


def plugin_requests(page):
    """Every request the page sends to the plugin, as (route, query dict), as they happen."""
    seen = []

    def record(request):
        parsed = urllib.parse.urlparse(request.url)
        if "/data/plugin/activations/" in parsed.path:
            seen.append((parsed.path.rsplit("/", 1)[-1], urllib.parse.parse_qs(parsed.query)))
    page.page.on("request", record)
    return seen


def options(frame):
    return frame.eval_on_selector_all(".run-select option", "os => os.map(o => o.value)")


def test_runs_come_first_and_the_filter_is_tensorboards(page, tensorboard):
    seen = plugin_requests(page)
    sizes = []
    page.page.on("response", lambda response: sizes.append(len(response.body()))
                 if "/data/plugin/activations/" in response.url
                 and response.headers.get("content-type", "").startswith("application/json")
                 else None)
    frame = page.open(tensorboard["url"] + "/#activations")
    page.wait_grid()
    wait_text(frame, ".run-count", "%d runs" % RUNS)
    first = helpers.sweep_run(0)
    assert options(frame)[0] == first
    layer_requests = [query for route, query in seen if route == "layers"]
    assert layer_requests and all(query.get("run") == [first] for query in layer_requests)
    assert any(route == "runs" for route, _ in seen)

    frame.fill(".run-filter", "SEED00[4-6]$")  # case-insensitive, anchored like any regex
    wait_text(frame, ".run-count", "3 of %d runs match" % RUNS)
    matching = [helpers.sweep_run(index) for index in (4, 5, 6)]
    assert options(frame) == [first] + matching  # the shown run stays selectable
    page.screenshot("sweep_run_filter", tensorboard)

    frame.fill(".run-filter", "seed(")
    frame.wait_for_selector(".run-filter.invalid")
    assert frame.inner_text(".run-count").startswith("Not a regular expression")
    frame.fill(".run-filter", "seed005$")
    wait_text(frame, ".run-count", "1 of %d runs match" % RUNS)
    del seen[:]
    frame.select_option(".run-select", helpers.sweep_run(5))
    wait_text(frame, ".layer-row.selected .layer-name", "conv000")
    page.wait_grid()
    assert [query["run"] for route, query in seen if route == "layers"] == [[helpers.sweep_run(5)]]
    assert sizes and max(sizes) < 1 << 20


def test_unreadable_tags_are_reported_and_the_rest_drawn(page, tensorboard):
    run = helpers.sweep_run(UNREADABLE)
    frame = page.open(tensorboard["url"] + "/#activations&p.activations.run=" +
                      urllib.parse.quote(run))
    page.wait_grid()
    notice = ".problems-notice"
    frame.wait_for_selector(notice, state="visible")
    assert frame.inner_text(notice + " summary") == "2 tags of run %s could not be read" % run
    assert not frame.is_visible(".problems-list")
    frame.click(notice + " summary")
    reasons = frame.eval_on_selector_all(".problems-list li", "ls => ls.map(l => l.textContent)")
    assert sorted(reason.split(":")[0] for reason in reasons) == [
        "activations/also_new", "activations/from_the_future"]
    assert all("version" in reason for reason in reasons)
    page.screenshot("sweep_problems_notice", tensorboard)
    frame.select_option(".run-select", helpers.sweep_run(2))
    frame.wait_for_selector(notice, state="hidden")


def test_neighbouring_steps_are_in_memory_before_they_are_shown(page, tensorboard):
    seen = plugin_requests(page)
    run = helpers.sweep_run(3)
    frame = page.open(tensorboard["url"] + "/#activations&p.activations.run=%s"
                      "&p.activations.layer=block00/conv001&p.activations.step=0"
                      % urllib.parse.quote(run))
    page.wait_grid()
    # The prefetcher asks for the layer's steps in windows of ./frames; wait until every step
    # of both probe samples is in memory.
    cached = """async ([run, steps]) => {
        const {api} = await import("./static/api.js");
        const entries = (await api.steps(run, "block00/conv001")).steps;
        return entries.length === steps && entries.every((e) => api.cached(run, "block00/conv001", e, 2));
    }"""
    for _ in range(100):
        if frame.evaluate(cached, [run, STEPS]):
            break
        page.page.wait_for_timeout(200)
    assert frame.evaluate(cached, [run, STEPS])
    assert any(route == "frames" for route, _ in seen)
    del seen[:]
    hashes = set()
    for step in range(1, STEPS):
        frame.click("button[title^='Next step']")
        frame.wait_for_selector(".grid-panel.current[data-step='%d']" % (10 * step))
        hashes.add(json.dumps(page.grid_pixels()))
    frame.click(".sample:not(.selected)")
    page.page.wait_for_timeout(300)
    assert [route for route, _ in seen if route in ("grid", "stats", "frames")] == []
    assert len(hashes) > 1
