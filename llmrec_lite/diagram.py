"""The whole model in one picture, drawn with plotly shapes and annotations.

:func:`model_figure` draws the path from the interactions to a recommendation: WALS fits
user and item vectors (chapter 2); two MLP projectors map them to the backbone's hidden
size (chapter 3); in the prompt the user id and each history item id become one projected
vector each while the rest stays text (chapter 4); the LLM with LoRA adapters reads the
prompt (chapter 5); and its answer is named one of two ways: as a text id generated under a
trie of valid ids (the paper), or as one item token per catalogue item whose output
embedding is the item projector's image of the item's vector, with the WALS score added
through a learned weight (the ``cf_term`` shortcut; this book's extension).

The figure has no data traces, so it renders the same in every build and needs no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

# the colours of chapter 4's batch picture: text, user slot, item slot
TEXT_COLOUR, USER_COLOUR, ITEM_COLOUR = "#9ecae1", "#fd8d3c", "#e6550d"
CF_COLOUR, MODEL_COLOUR, OUTPUT_COLOUR = "#d9f0d3", "#dadaeb", "#fff2cc"
SHORTCUT_COLOUR = "#31a354"


@dataclass(frozen=True)
class Box:
    """One labelled rectangle of the diagram (data coordinates, y upwards)."""

    name: str
    x0: float
    x1: float
    y0: float
    y1: float
    label: str
    fill: str
    hover: str = ""

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


# the prompt of chapter 4's first sequential template, cut into text pieces and slots
PROMPT = [("LastFM user", "text"), ("⟨u⟩", "user"), ("has interacted with", "text"), ("⟨v₁⟩", "item"),
          ("⟨v₂⟩", "item"), ("⟨v₃⟩", "item"), ("… pick next? Response:", "text")]


def model_boxes() -> dict[str, Box]:
    """Every box of :func:`model_figure`, by name (the prompt's pieces are ``prompt_0``, ...)."""
    boxes = [
        Box("wals", 2.6, 7.6, 10.7, 11.7, "<b>WALS</b> on the training interactions (ch. 2)", CF_COLOUR,
            "weighted alternating least squares: one k-dimensional vector per user and per item; frozen afterwards"),
        Box("user_vector", 0.4, 4.6, 9.0, 9.8, "user vector u", CF_COLOUR, "the user's WALS vector (k numbers)"),
        Box("item_vectors", 5.6, 9.8, 9.0, 9.8, "item vectors v<sub>j</sub>, one per item", CF_COLOUR,
            "every catalogue item's WALS vector (k numbers each)"),
        Box("user_projector", 0.4, 4.6, 7.2, 8.2, "<b>user projector</b> f<sub>u</sub><br>2-layer MLP, k → d (ch. 3)",
            USER_COLOUR, "maps a user vector to the backbone's hidden size d, calibrated to a token's norm"),
        Box("item_projector", 5.6, 9.8, 7.2, 8.2, "<b>item projector</b> f<sub>i</sub><br>2-layer MLP, k → d (ch. 3)",
            ITEM_COLOUR, "maps an item vector to the hidden size d; also the item tokens' output layer"),
        Box("llm", 0.4, 9.8, 3.4, 4.4, "<b>LLM</b>: frozen backbone + LoRA adapters (ch. 5)", MODEL_COLOUR,
            "stage 1 trains the projectors through the frozen backbone; stage 2 adds LoRA adapters"),
        Box("text_id", 0.1, 5.0, 0.2, 2.2, "<b>text id</b> (the paper)<br>LM head, beam search constrained<br>"
            "by a trie of valid ids → “LastFM item_1024”", OUTPUT_COLOUR,
            "generated token by token; the trie allows only strings that name a catalogue item (ch. 6)"),
        Box("item_token", 5.4, 11.9, 0.2, 2.2, "<b>item token</b> (this book)<br>"
            "one output token per item, tied to the item projector;<br>"
            "score = LLM term + w·⟨u, v<sub>j</sub>⟩ + offsets,<br>every item in one forward pass (ch. 4.5)",
            OUTPUT_COLOUR, "the hidden state at the answer position is scored against every item at once (ch. 4.5)"),
    ]
    # the prompt: one row of pieces whose widths follow their text; a slot is narrow (one position)
    widths = [0.8 if kind != "text" else 0.11 * len(text) + 0.3 for text, kind in PROMPT]
    scale = (9.8 - 0.4 - 0.1 * (len(PROMPT) - 1)) / sum(widths)
    x = 0.4
    for k, ((text, kind), width) in enumerate(zip(PROMPT, widths)):
        fill = {"text": TEXT_COLOUR, "user": USER_COLOUR, "item": ITEM_COLOUR}[kind]
        hover = {"text": "text: token embeddings, as in any prompt",
                 "user": "user slot: one position holding f_u(u)",
                 "item": "history-item slot: one position holding f_i(v_j)"}[kind]
        boxes.append(Box(f"prompt_{k}", x, x + width * scale, 5.3, 6.0, text, fill, hover))
        x += width * scale + 0.1
    return {b.name: b for b in boxes}


def _arrow(fig, start: tuple[float, float], end: tuple[float, float], colour: str = "#555", dash: bool = False,
           text: str = "") -> None:
    """An arrow from ``start`` to ``end`` (an annotation whose arrow tail sits at ``start``)."""
    if dash:  # plotly draws annotation arrows solid: a dashed line, then a short solid head
        fig.add_shape(type="line", x0=start[0], y0=start[1], x1=end[0], y1=end[1],
                      line=dict(color=colour, width=1.5, dash="dash"))
    fig.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x", ayref="y",
                       text="", showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor=colour,
                       standoff=1, startstandoff=1, opacity=1)
    if text:
        fig.add_annotation(x=(start[0] + end[0]) / 2, y=(start[1] + end[1]) / 2, text=text, showarrow=False,
                           font=dict(size=11, color=colour), bgcolor="white", xanchor="left")


def model_figure():
    """A :class:`plotly.graph_objects.Figure` of the whole model (shapes and annotations only).

    Boxes are those of :func:`model_boxes`; each has a hover text saying what it does. The two
    shortcuts of the item-token side run down the right: the output embeddings tied to the
    item projector, and the WALS score ``<u, v_j>`` added with a learned weight ``w``
    (``cf_term``).
    """
    import plotly.graph_objects as go

    boxes = model_boxes()
    fig = go.Figure()
    for b in boxes.values():
        fig.add_shape(type="rect", x0=b.x0, x1=b.x1, y0=b.y0, y1=b.y1, fillcolor=b.fill,
                      line=dict(color="#444", width=1), layer="below", name=b.name)
        prompt_piece = b.name.startswith("prompt_")
        fig.add_annotation(x=b.cx, y=b.cy, text=b.label, showarrow=False, hovertext=b.hover, name=b.name,
                           font=dict(size=10 if prompt_piece else 12, color="#111"))
    fig.add_annotation(x=0.4, y=4.95, text="<b>prompt</b> (ch. 4): the user id and each history item id become "
                       "one projected vector each;<br>the rest stays text", showarrow=False, xanchor="left",
                       align="left", font=dict(size=11, color="#333"), name="prompt_caption")
    slots = [b for name, b in boxes.items() if name.startswith("prompt_") and b.fill != TEXT_COLOUR]
    user_slot = next(b for b in slots if b.fill == USER_COLOUR)
    item_slots = [b for b in slots if b.fill == ITEM_COLOUR]
    wals, u, v = boxes["wals"], boxes["user_vector"], boxes["item_vectors"]
    fu, fi, llm = boxes["user_projector"], boxes["item_projector"], boxes["llm"]
    text_id, item_token = boxes["text_id"], boxes["item_token"]
    _arrow(fig, (wals.cx - 1.2, wals.y0), (u.cx, u.y1))
    _arrow(fig, (wals.cx + 1.2, wals.y0), (v.cx, v.y1))
    _arrow(fig, (u.cx, u.y0), (fu.cx, fu.y1))
    _arrow(fig, (v.cx, v.y0), (fi.cx, fi.y1))
    _arrow(fig, (fu.cx, fu.y0), (user_slot.cx, user_slot.y1), USER_COLOUR)
    for slot in item_slots:
        _arrow(fig, (fi.cx, fi.y0), (slot.cx, slot.y1), ITEM_COLOUR)
    _arrow(fig, (9.4, 5.3), (9.4, llm.y1))
    _arrow(fig, (text_id.cx, llm.y0), (text_id.cx, text_id.y1), text="&nbsp;h, then one token at a time")
    _arrow(fig, (7.0, llm.y0), (7.0, item_token.y1), text="&nbsp;h at the answer position")
    # the item-token side's two shortcuts, down the right lane
    tied_x, cf_x = 10.45, 11.35
    fig.add_shape(type="path", path=f"M {fi.x1},{fi.cy} L {tied_x},{fi.cy} L {tied_x},{item_token.y1 + 0.6}",
                  line=dict(color=ITEM_COLOUR, width=1.5, dash="dash"), name="tied")
    _arrow(fig, (tied_x, item_token.y1 + 0.6), (tied_x, item_token.y1), ITEM_COLOUR)
    fig.add_annotation(x=tied_x + 0.2, y=5.4, text="tied: output embedding = f<sub>i</sub>(v<sub>j</sub>)",
                       textangle=-90, showarrow=False, font=dict(size=11, color=ITEM_COLOUR), name="tied_label")
    fig.add_shape(type="path", path=f"M {wals.x1},{wals.cy} L {cf_x},{wals.cy} L {cf_x},{item_token.y1 + 0.6}",
                  line=dict(color=SHORTCUT_COLOUR, width=1.5, dash="dash"), name="cf_term")
    _arrow(fig, (cf_x, item_token.y1 + 0.6), (cf_x, item_token.y1), SHORTCUT_COLOUR)
    fig.add_annotation(x=cf_x + 0.2, y=6.4, text="cf_term: WALS score ⟨u, v<sub>j</sub>⟩ times a learned w",
                       textangle=-90, showarrow=False, font=dict(size=11, color=SHORTCUT_COLOUR), name="cf_term_label")
    fig.update_xaxes(visible=False, range=[0, 12], fixedrange=True)
    fig.update_yaxes(visible=False, range=[0, 12], fixedrange=True)
    fig.update_layout(plot_bgcolor="white", paper_bgcolor="white", margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text="The fusion model: from the interactions to a recommendation", x=0.5),
                      showlegend=False, hovermode="closest")
    return fig
