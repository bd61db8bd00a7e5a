"""The model figure (llmrec_lite.diagram): its boxes, what they say, and how they connect."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

from llmrec_lite.diagram import ITEM_COLOUR, TEXT_COLOUR, USER_COLOUR, model_boxes, model_figure

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fig():
    return model_figure()


def labels(fig) -> dict[str, str]:
    return {a.name: a.text for a in fig.layout.annotations if a.name}


def test_every_part_of_the_model_has_a_box_that_names_it(fig):
    boxes = model_boxes()
    rects = {s.name: s for s in fig.layout.shapes if s.type == "rect"}
    assert set(rects) == set(boxes)
    said = labels(fig)
    for name, words in {"wals": ["WALS"], "user_vector": ["user vector"], "item_vectors": ["item vectors"],
                        "user_projector": ["user projector", "MLP"], "item_projector": ["item projector", "MLP"],
                        "llm": ["LLM", "LoRA"], "text_id": ["text id", "trie", "beam search"],
                        "item_token": ["item token", "one output token per item", "item projector"]}.items():
        assert all(w in said[name] for w in words), (name, said[name])
    assert len(fig.data) == 0  # shapes and annotations only: nothing depends on data


def test_the_prompt_has_one_user_slot_history_item_slots_and_text(fig):
    pieces = sorted((b for name, b in model_boxes().items() if name.startswith("prompt_")), key=lambda b: b.x0)
    fills = [b.fill for b in pieces]
    assert fills.count(USER_COLOUR) == 1 and fills.count(ITEM_COLOUR) >= 2 and TEXT_COLOUR in fills
    assert all(a.x1 < b.x0 for a, b in zip(pieces, pieces[1:]))  # one row, left to right, no overlap
    assert "Response:" in pieces[-1].label


def test_arrows_lead_from_wals_through_the_projectors_to_both_outputs(fig):
    boxes = model_boxes()

    def inside(name, x, y, pad=0.05):
        b = boxes[name]
        return b.x0 - pad <= x <= b.x1 + pad and b.y0 - pad <= y <= b.y1 + pad

    arrows = [(a.ax, a.ay, a.x, a.y) for a in fig.layout.annotations if a.showarrow]
    def linked(src, dst):
        return any(inside(src, x0, y0) and inside(dst, x1, y1) for x0, y0, x1, y1 in arrows)

    assert linked("wals", "user_vector") and linked("wals", "item_vectors")
    assert linked("user_vector", "user_projector") and linked("item_vectors", "item_projector")
    slots = {b.fill: name for name, b in boxes.items() if name.startswith("prompt_")}
    assert linked("user_projector", slots[USER_COLOUR])
    item_slots = [name for name, b in boxes.items() if name.startswith("prompt_") and b.fill == ITEM_COLOUR]
    assert all(linked("item_projector", s) for s in item_slots)
    assert linked("llm", "text_id") and linked("llm", "item_token")


def test_the_item_token_side_draws_its_tie_and_the_cf_term_shortcut(fig):
    paths = {s.name: s for s in fig.layout.shapes if s.type == "path"}
    assert set(paths) == {"tied", "cf_term"}
    said = labels(fig)
    assert "tied" in said["tied_label"] and "cf_term" in said["cf_term_label"] and "WALS score" in said["cf_term_label"]
    boxes = model_boxes()
    # the tie starts at the item projector, the shortcut at WALS; both end over the item-token box
    start = lambda s: tuple(float(v) for v in s.path.split("L")[0].strip("M ").split(","))
    end = lambda s: tuple(float(v) for v in s.path.split("L")[-1].split(","))
    assert start(paths["tied"]) == (boxes["item_projector"].x1, boxes["item_projector"].cy)
    assert start(paths["cf_term"]) == (boxes["wals"].x1, boxes["wals"].cy)
    for s in paths.values():
        x, y = end(s)
        assert boxes["item_token"].x0 < x < boxes["item_token"].x1 and y > boxes["item_token"].y1


def test_boxes_stay_inside_the_drawing_and_do_not_overlap(fig):
    boxes = list(model_boxes().values())
    x_range, y_range = fig.layout.xaxis.range, fig.layout.yaxis.range
    for b in boxes:
        assert x_range[0] <= b.x0 < b.x1 <= x_range[1] and y_range[0] <= b.y0 < b.y1 <= y_range[1], b.name
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0, (a.name, b.name)


def test_the_introduction_shows_the_figure(monkeypatch):
    """book/intro.md runs its code cells in the build: they draw this figure and show it."""
    import llmrec_lite.plots

    shown = []
    monkeypatch.setattr(llmrec_lite.plots, "show", lambda fig, height=None: shown.append((fig, height)))
    nb = jupytext.read(ROOT / "book" / "intro.md")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and nb.metadata["kernelspec"]["name"] == "python3"
    for cell in code:
        exec(compile(cell.source, "intro.md", "exec"), {})
    [(figure, height)] = shown
    assert labels(figure) == labels(model_figure()) and height
