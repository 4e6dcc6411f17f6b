"""The tab over a hyperparameter sweep (many runs, crafted in the real stored format), through
TensorBoard's two loaders in Debian's Chromium: runs are listed first and searched with
TensorBoard's run filter, a run's layers come when it is opened, unreadable tags are reported,
and neighbouring steps are loaded in the background so stepping needs no request.
"""

import json
import os
import re
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


def open_layer(page, tensorboard, run, layer, step):
    """The tab on `layer` of `run` at `step`, once that step's grid is drawn."""
    frame = page.open(tensorboard["url"] + "/#activations&p.activations.run=%s"
                      "&p.activations.layer=%s&p.activations.step=%d"
                      % (urllib.parse.quote(run), layer, step))
    frame.wait_for_selector(".grid-panel.current[data-step='%d']" % step)
    return frame


def until(page, condition):
    """Polls condition() for up to 10 s; its last value."""
    for _ in range(100):
        if condition():
            return True
        page.page.wait_for_timeout(100)
    return condition()


def every_step_cached(frame, run, layer):
    """Whether every logged step of `layer` (both probe samples) is in the page's memory."""
    return frame.evaluate("""async ([run, layer, steps]) => {
        const {api} = await import("./static/api.js");
        const entries = (await api.steps(run, layer)).steps;
        return entries.length === steps && entries.every((e) => api.cached(run, layer, e, 2));
    }""", [run, layer, STEPS])


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
    frame = open_layer(page, tensorboard, run, "block00/conv001", 0)
    # The prefetcher asks for the layer's steps in windows of ./frames; wait until every step
    # of both probe samples is in memory.
    assert until(page, lambda: every_step_cached(frame, run, "block00/conv001"))
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


def network_log(page):
    """Every plugin request's start ("request"), answer ("finished") and failure ("failed",
    with its error text), as (event, route, query, detail), in the order the browser saw them
    (requests from the page's workers included)."""
    log = []

    def recorder(event, detail=lambda request: None):
        def record(request):
            parsed = urllib.parse.urlparse(request.url)
            if "/data/plugin/activations/" in parsed.path:
                log.append((event, parsed.path.rsplit("/", 1)[-1],
                            urllib.parse.parse_qs(parsed.query), detail(request)))
        return record
    page.page.on("request", recorder("request"))
    page.page.on("requestfinished", recorder("finished"))
    page.page.on("requestfailed", recorder("failed", lambda request: request.failure))
    return log


def test_a_layers_first_view_asks_for_its_step_beside_its_steps(page, tensorboard):
    """The step shown is asked for at once on another layer, not after its ./steps answer."""
    run = helpers.sweep_run(7)
    open_layer(page, tensorboard, run, "block00/conv001", 50)
    log = network_log(page)
    frame = page.frame
    frame.click(".layer-row:has-text('conv004')")
    frame.wait_for_selector(".layer-row.selected:has-text('conv004')")
    frame.wait_for_selector(".grid-panel.current[data-step='50']")

    def at(event, route):
        found = [index for index, (kind, name, query, _) in enumerate(log)
                 if kind == event and name == route and query.get("layer") == ["block01/conv004"]]
        return found[0] if found else None
    # Playwright may tell of an answer's end after the page has used it.
    assert until(page, lambda: at("finished", "steps") is not None), log
    steps_answered = at("finished", "steps")
    assert at("request", "grid") < steps_answered
    assert at("request", "stats") < steps_answered
    grid = [query for kind, name, query, _ in log if kind == "request" and name == "grid"]
    assert grid == [{"run": [run], "layer": ["block01/conv004"], "step": ["50"], "sample": ["0"]}]


def routed_layers(routes):
    """The layer each held request asks for."""
    return [urllib.parse.parse_qs(urllib.parse.urlparse(route.request.url).query)["layer"]
            for route in routes]


def test_a_layer_left_has_its_prefetch_requests_cancelled(page, tensorboard):
    """./frames requests of a layer left are aborted; the new layer's are answered."""
    held = []
    frames = re.compile(r"/data/plugin/activations/frames\?")
    page.page.route(frames, lambda route: held.append(route))
    log = network_log(page)
    run = helpers.sweep_run(8)
    frame = open_layer(page, tensorboard, run, "block00/conv001", 0)
    # Two requests at once: the four nearest steps first, then the rest of the 12.
    assert until(page, lambda: len(held) == 2)
    assert routed_layers(held) == [["block00/conv001"]] * 2
    assert urllib.parse.parse_qs(urllib.parse.urlparse(held[0].request.url).query)["steps"] == [
        "0,10,20,30"]
    frame.click(".layer-row:has-text('conv002')")
    frame.wait_for_selector(".layer-row.selected:has-text('conv002')")
    page.wait_grid()

    def failures():
        return [(query["layer"], detail) for kind, _, query, detail in log if kind == "failed"]
    assert until(page, lambda: len(failures()) == 2 and len(held) == 4)
    assert failures() == [(["block00/conv001"], "net::ERR_ABORTED")] * 2, log
    assert routed_layers(held[2:]) == [["block00/conv002"]] * 2
    for route in held[2:]:
        route.continue_()
    assert until(page, lambda: every_step_cached(frame, run, "block00/conv002"))


def show_layer(page, name, step):
    """Clicks layer `name` in the list, and waits until its `step` is drawn."""
    shown = page.frame.query_selector(".grid-panel.current")
    page.frame.click(".layer-row:has-text('%s')" % name)
    shown.wait_for_element_state("hidden")  # that view is taken out of the page
    page.frame.wait_for_selector(".grid-panel.current[data-step='%d']" % step)


def test_a_layer_shown_again_is_drawn_from_memory(page, tensorboard):
    """Back on a layer whose steps are in memory, no grid or statistics are asked for."""
    run = helpers.sweep_run(9)
    frame = open_layer(page, tensorboard, run, "block00/conv001", 50)
    assert until(page, lambda: every_step_cached(frame, run, "block00/conv001"))
    show_layer(page, "conv002", 50)
    log = network_log(page)
    show_layer(page, "conv001", 50)
    page.page.wait_for_timeout(300)
    asked = [(route, query["layer"]) for kind, route, query, _ in log if kind == "request"]
    assert ("steps", ["block00/conv001"]) in asked
    assert [route for route, _ in asked if route in ("grid", "stats", "frames")] == []
