"""The tab names tokens: a BERT run logged with token_labels=its tokenizer, in a real
TensorBoard, hovered in Chromium."""

import pytest

from tests import browser_helpers
from tests.test_token_labels import EXPECTED
from tests.test_token_labels import log_bert_run

ATTENTION = "encoder/layer/0/attention/self:attention"
SEQUENCE = "encoder/layer/0/output/LayerNorm"


@pytest.fixture(scope="module")
def bert_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_tokens")
    log_bert_run(root / "bert", tmp_path_factory.mktemp("vocab"))
    return root


def hover_grid_pixel(page, frame, x, y):
    """Moves the pointer over grid pixel (x, y) of the grid canvas; the tooltip's text."""
    canvas = frame.query_selector(".grid-canvas")
    width, height = canvas.evaluate("c => [c.width, c.height]")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + (x + 0.5) / width * box["width"],
                    box["y"] + (y + 0.5) / height * box["height"])
    frame.wait_for_selector(".grid-area .tooltip:not([hidden])")
    return frame.inner_text(".grid-area .tooltip")


@pytest.mark.browser
def test_hovering_an_attention_pixel_and_a_sequence_row_names_their_tokens(bert_logdir, tmp_path):
    pytest.importorskip("playwright.sync_api")
    tips = {}
    with browser_helpers.served_page(bert_logdir) as (page, url, errors):
        for layer, sample, (x, y) in ((ATTENTION, 0, (6, 3)), (SEQUENCE, 1, (5, 2)),
                                      (ATTENTION, 1, (1, 4))):
            frame = browser_helpers.open_layer(page, url, "bert", layer, sample=sample)
            frame.wait_for_selector(".grid-canvas")
            tips[layer, sample] = hover_grid_pixel(page, frame, x, y)
            page.screenshot(path=str(tmp_path / ("tab_%d_%d.png" % (len(tips), sample))))
            page.goto("about:blank")
    assert errors == []
    # head 0, query row 3, key column 6 of sample 0: "sat" attends to "mat"
    assert "query 3 '%s', key 6 '%s'" % (EXPECTED[0][3], EXPECTED[0][6]) in tips[ATTENTION, 0]
    assert "head 0, query 3, key 6" in tips[ATTENTION, 0]
    # row 2 of a (B, 8, 16) sequence of sample 1 is its token 2
    assert "token 2 '%s'" % EXPECTED[1][2] in tips[SEQUENCE, 1]
    assert "query 4 '[SEP]', key 1 'a'" in tips[ATTENTION, 1]
