"""The embedding explorer: where CF vectors and their projections sit, and what that means.

Computation only (display lives in the chapter and :class:`Explorer`). For the item
embeddings at three points of the method (WALS factors; projected after stage 1; projected
after stage 2) it computes seeded UMAP layouts and measures that say what a picture can be
trusted for:

- *trustworthiness* (scikit-learn): how well a 2-D layout keeps each point's neighbours;
- *nearest-token cosine*: for each projected item, the cosine similarity to the closest real
  token embedding of the backbone (does the projector write vectors the LLM has seen before?);
- *norms* of the projected vectors against the token embeddings';
- *neighbour popularity*: whether popular items sit next to popular items in the original
  space (measured there, not read off a picture).

:func:`explorer_inputs` gathers what the chapter lays out from a :class:`~llmrec_lite.runs.Run`
and its trained models: the most popular items, their vectors at each point, popularity,
attribute labels and hover text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from llmrec_lite.data import load_attributes
from llmrec_lite.plots import as_html

# umap-learn, scikit-learn, scipy.stats, pandas, plotly and ipywidgets are the book's optional extras
# (pip install llmrec-lite[book]): imported where used, so the package runs without them.


def umap_layout(vectors, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine", seed: int = 0,
                n_epochs: int | None = None) -> np.ndarray:
    """A seeded 2-D UMAP layout (``random_state`` makes umap-learn deterministic)."""
    import umap

    vectors = np.asarray(vectors, dtype=np.float32)
    n_neighbors = max(2, min(n_neighbors, len(vectors) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed,
                        n_components=2, n_epochs=n_epochs, init="random" if len(vectors) < 50 else "spectral")
    return reducer.fit_transform(vectors).astype(np.float32)


def trustworthiness(vectors, layout, n_neighbors: int = 10, metric: str = "cosine") -> float:
    """scikit-learn's trustworthiness of a layout, in [0, 1] (1: no false neighbours)."""
    from sklearn.manifold import trustworthiness as tw

    vectors = np.asarray(vectors, dtype=np.float32)
    n_neighbors = max(1, min(n_neighbors, len(vectors) // 2 - 1))
    return float(tw(vectors, layout, n_neighbors=n_neighbors, metric=metric))


POPULARITY_NEIGHBOURS = 10  # neighbours per item in :func:`neighbour_popularity`


def neighbour_popularity(vectors, popularity, k: int = POPULARITY_NEIGHBOURS) -> float:
    """Spearman correlation between an item's popularity and its neighbours' (log scale).

    Each item's ``k`` nearest neighbours (cosine, the item itself excluded) are found in the
    original space; the correlation is taken between ``log(1 + popularity)`` of the item and
    the mean of its neighbours'. A large value means popular items sit with popular items.

    Args:
        vectors: ``(items, dim)`` item vectors.
        popularity: Training popularity of the same items.
        k: Neighbours per item (capped at ``items - 1``).

    Returns:
        The correlation in [-1, 1] (``nan`` when every item has the same popularity).
    """
    from scipy.stats import spearmanr

    v = torch.nn.functional.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float32), dim=1)
    sim = v @ v.T
    sim.fill_diagonal_(-2.0)  # below any cosine: an item is not its own neighbour
    nn_idx = sim.topk(max(1, min(k, len(v) - 1)), dim=1).indices.numpy()
    log_pop = np.log1p(np.asarray(popularity, dtype=np.float64))
    return float(spearmanr(log_pop, log_pop[nn_idx].mean(1)).correlation)


def nearest_token_cosine(vectors, token_embeddings, batch_size: int = 1024) -> np.ndarray:
    """For each vector, the largest cosine similarity to any token embedding."""
    v = torch.nn.functional.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float32), dim=1)
    t = torch.nn.functional.normalize(torch.as_tensor(token_embeddings, dtype=torch.float32), dim=1)
    best = [(v[i : i + batch_size] @ t.T).max(dim=1).values for i in range(0, len(v), batch_size)]
    return torch.cat(best).numpy()


def norm_summary(vectors) -> dict:
    """Mean, standard deviation and 5th/95th percentiles of the vectors' L2 norms."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    return {"mean": float(norms.mean()), "std": float(norms.std()), "p5": float(np.percentile(norms, 5)),
            "p95": float(np.percentile(norms, 95))}


@dataclass
class View:
    """One embedding space: the vectors, their layout and the measures."""

    name: str
    vectors: np.ndarray
    layout: np.ndarray
    trustworthiness: float
    nearest_token_cosine: np.ndarray | None = None
    norms: dict = field(default_factory=dict)


def build_views(item_sets: dict[str, np.ndarray], token_embeddings=None, n_neighbors: int = 15, seed: int = 0,
                n_epochs: int | None = None) -> dict[str, View]:
    """Layouts and measures for each named set of item vectors.

    Args:
        item_sets: e.g. ``{"WALS": factors, "stage 1": projected_1, "stage 2": projected_2}``.
        token_embeddings: The backbone's token embeddings (for the nearest-token cosine of
            vectors that live in the backbone's space, i.e. same dimension).
    """
    views = {}
    for name, vectors in item_sets.items():
        vectors = np.asarray(vectors, dtype=np.float32)
        layout = umap_layout(vectors, n_neighbors=n_neighbors, seed=seed, n_epochs=n_epochs)
        cos = None
        if token_embeddings is not None and vectors.shape[1] == np.asarray(token_embeddings).shape[1]:
            cos = nearest_token_cosine(vectors, token_embeddings)
        views[name] = View(name, vectors, layout, trustworthiness(vectors, layout), cos, norm_summary(vectors))
    return views


def joint_token_layout(projected, token_sample, n_neighbors: int = 15, seed: int = 0,
                       n_epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One layout of projected items together with sampled token embeddings (for context)."""
    both = np.concatenate([np.asarray(token_sample, np.float32), np.asarray(projected, np.float32)])
    layout = umap_layout(both, n_neighbors=n_neighbors, seed=seed, n_epochs=n_epochs)
    return layout[: len(token_sample)], layout[len(token_sample) :]


def measures_table(views: dict[str, View], popularity, k: int = POPULARITY_NEIGHBOURS):
    """One row per view: dimension, trustworthiness, neighbour popularity, mean norm and mean
    nearest-token cosine (NaN for vectors outside the backbone's space).

    Args:
        views: :func:`build_views`'s result.
        popularity: Popularity of the laid-out items (as for :func:`neighbour_popularity`).
        k: Neighbours per item for :func:`neighbour_popularity`.
    """
    import pandas as pd

    rows = []
    for name, view in views.items():
        cos = view.nearest_token_cosine
        rows.append({"vectors": name, "dimension": view.vectors.shape[1],
                     "UMAP trustworthiness": view.trustworthiness,
                     "popularity of neighbours (Spearman)": neighbour_popularity(view.vectors, popularity, k),
                     "mean norm": view.norms["mean"],
                     "nearest-token cosine (mean)": None if cos is None else float(cos.mean())})
    return pd.DataFrame(rows).set_index("vectors")


def measure_facts(measures, token_embeddings) -> dict:
    """Chapter 8.1's numbers from :func:`measures_table` (with the default views): UMAP
    trustworthiness (``tw_``) and neighbour popularity (``np_``) of the WALS and stage-2
    spaces, the mean nearest-token cosine of both stages' projections (``ntc_s1``, ``ntc_s2``),
    the stage-2 mean norm against the tokens' (``norm_s2``, ``token_norm``, ``norm_ratio``) and
    the neighbours per item (``np_k``)."""
    wals, s1, s2 = (measures.loc[name] for name in (WALS_VIEW, projected_view(1), projected_view(2)))
    token_norm = float(np.linalg.norm(token_embeddings, axis=1).mean())
    return {"tw_wals": wals["UMAP trustworthiness"], "tw_s2": s2["UMAP trustworthiness"],
            "np_wals": wals["popularity of neighbours (Spearman)"], "np_s2": s2["popularity of neighbours (Spearman)"],
            "ntc_s1": s1["nearest-token cosine (mean)"], "ntc_s2": s2["nearest-token cosine (mean)"],
            "token_norm": token_norm, "norm_s2": s2["mean norm"], "norm_ratio": s2["mean norm"] / token_norm,
            "np_k": POPULARITY_NEIGHBOURS}


# --------------------------------------------------------------------------- inputs from a run


WALS_VIEW = "WALS item factors"


def projected_view(stage: int) -> str:
    """The name of the view of item vectors projected by a stage's model."""
    return f"projected, stage {stage}"


def most_popular(popularity, num_items: int | None) -> np.ndarray:
    """Indices of the ``num_items`` most popular items, in item order (``None``: all items).

    Ties are broken by item index (stable sort), so the selection is deterministic.
    """
    popularity = np.asarray(popularity)
    if num_items is None or num_items >= len(popularity):
        return np.arange(len(popularity))
    return np.sort(np.argsort(-popularity, kind="stable")[:num_items])


def hover_texts(data, items, popularity, attributes: dict[int, list[int]], max_attributes: int = 6) -> list[str]:
    """Hover text per item: its text, training popularity and first attributes.

    Args:
        data: The :class:`~llmrec_lite.data.InteractionData` (for ``item_text``).
        items: Item indices.
        popularity: Popularity of *every* item (indexed by item).
        attributes: ``{item index: [attribute id, ...]}`` of every item.
    """
    return [f"{data.item_text(int(i))}<br>popularity {int(popularity[i])}<br>attributes "
            f"{attributes.get(int(i), [])[:max_attributes]}" for i in items]


@dataclass
class ExplorerInputs:
    """What the explorer lays out: a set of items and what is known about each.

    Rows of every array follow ``shown``.

    Attributes:
        shown: Item indices laid out (the most popular, in item order).
        item_sets: ``{view name: (len(shown), dim) vectors}``: the WALS factors and their
            projection by each stage's model.
        popularity: Training popularity of the shown items.
        labels: Attribute label per shown item (see :func:`attribute_labels`).
        hover: Hover text per shown item.
        position: ``{item index: row}`` for the shown items.
        tokens: The backbone's token embeddings (vocab x hidden).
    """

    shown: np.ndarray
    item_sets: dict[str, np.ndarray]
    popularity: np.ndarray
    labels: list[str]
    hover: list[str]
    position: dict[int, int]
    tokens: np.ndarray

    def rows_of(self, items) -> list[int]:
        """Rows of the given items, skipping those not laid out (only those can be highlighted)."""
        return [self.position[int(i)] for i in items if int(i) in self.position]

    def highlights(self, evaluation, split, limit: int = 50) -> dict[int, tuple[list[int], int, list[int]]]:
        """``user -> (history rows, test-item row, top-10 rows)`` for :class:`Explorer`.

        Only users whose test item is laid out are kept, the first ``limit`` of them.

        Args:
            evaluation: An :class:`~llmrec_lite.evaluate.Evaluation` (users, gold items, top lists).
            split: The split the evaluation used (for the users' histories).
        """
        out = {}
        for u, gold, top in zip(evaluation.users, evaluation.gold, evaluation.top_items):
            if int(gold) in self.position:
                out[int(u)] = (self.rows_of(split.history(int(u))), self.position[int(gold)], self.rows_of(top))
            if len(out) >= limit:
                break
        return out

    def token_sample(self, size: int, seed: int = 0) -> np.ndarray:
        """A seeded sample of ``size`` token embeddings (all of them when there are fewer)."""
        rng = np.random.default_rng(seed)
        return self.tokens[rng.choice(len(self.tokens), size=min(size, len(self.tokens)), replace=False)]


def explorer_inputs(run, models: dict, num_items: int | None = None,
                    attributes: dict[int, list[int]] | None = None) -> ExplorerInputs:
    """The explorer's items and vectors for one run.

    Args:
        run: A :class:`~llmrec_lite.runs.Run` (data, split, WALS factors, backbone).
        models: ``{stage: trained model}``: :class:`~llmrec_lite.runs.Trained` models (or
            fusion models) whose item projector maps the WALS factors.
        num_items: How many of the most popular items to lay out (``None``: all). UMAP on a
            2-core machine cannot lay out every item of a large catalogue.
        attributes: Item attributes; default: the dataset's
            (:func:`llmrec_lite.data.load_attributes`).
    """
    if attributes is None:
        attributes = load_attributes(run.data)
    all_popularity = run.data.item_popularity(run.split.train)
    shown = most_popular(all_popularity, num_items)
    factors = run.wals.item_factors[torch.as_tensor(shown)]
    item_sets = {WALS_VIEW: factors.detach().cpu().float().numpy()}
    with torch.no_grad():
        for stage, trained in sorted(models.items()):
            model = getattr(trained, "model", trained)
            projector = model.projectors.item
            device = next(projector.parameters()).device
            item_sets[projected_view(stage)] = projector(factors.to(device)).float().cpu().numpy()
    return ExplorerInputs(
        shown=shown,
        item_sets=item_sets,
        popularity=all_popularity[shown],
        labels=attribute_labels({k: attributes.get(int(i), []) for k, i in enumerate(shown)}, len(shown)),
        hover=hover_texts(run.data, shown, all_popularity, attributes),
        position={int(i): k for k, i in enumerate(shown)},
        tokens=run.backbone.token_embeddings().detach().float().cpu().numpy(),
    )


# --------------------------------------------------------------------------- display


def attribute_labels(attributes: dict[int, list[int]], num_items: int, top: int = 8) -> list[str]:
    """Each item's most common attribute among the ``top`` most frequent ones, else "other"."""
    counts = Counter(a for attrs in attributes.values() for a in attrs)
    common = [a for a, _ in counts.most_common(top)]
    labels = []
    for i in range(num_items):
        attrs = attributes.get(i, [])
        hit = next((a for a in common if a in attrs), None)
        labels.append(f"attribute {hit}" if hit is not None else "other")
    return labels


def static_figure(views: dict[str, View], popularity: np.ndarray, labels: list[str], hover: list[str]):
    """A plotly figure whose buttons switch view and colouring; works without a kernel."""
    import plotly.graph_objects as go

    log_pop = np.log1p(popularity)
    traces, names = [], list(views)
    for name in names:
        xy = views[name].layout
        traces.append(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=f"{name} (popularity)",
                                   marker=dict(size=4, color=log_pop, colorscale="Viridis", showscale=True,
                                               colorbar=dict(title="log(1+pop)")),
                                   text=hover, hovertemplate="%{text}<extra></extra>", visible=False))
        cats = sorted(set(labels))
        for cat in cats:
            idx = [i for i, l in enumerate(labels) if l == cat]
            traces.append(go.Scattergl(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=cat, legendgroup=name,
                                       marker=dict(size=4), text=[hover[i] for i in idx],
                                       hovertemplate="%{text}<extra></extra>", visible=False))
    per_view = 1 + len(set(labels))
    traces[0].visible = True
    fig = go.Figure(traces)

    def visibility(view_index: int, colour: str) -> list[bool]:
        vis = [False] * len(traces)
        base = view_index * per_view
        if colour == "popularity":
            vis[base] = True
        else:
            for k in range(1, per_view):
                vis[base + k] = True
        return vis

    buttons = []
    for v, name in enumerate(names):
        for colour in ("popularity", "attribute"):
            buttons.append(dict(label=f"{name} · {colour}", method="update",
                                args=[{"visible": visibility(v, colour)},
                                      {"title.text": f"{name}: trustworthiness {views[name].trustworthiness:.3f}"}]))
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.15, yanchor="top")],
                      title=f"{names[0]}: trustworthiness {views[names[0]].trustworthiness:.3f}",
                      xaxis_title="UMAP 1", yaxis_title="UMAP 2", margin=dict(t=110))
    return fig


def token_layout_figure(token_xy: np.ndarray, item_xy: np.ndarray, popularity, hover: list[str],
                        items_name: str = "projected items, stage 2"):
    """Token embeddings (grey) and projected items (coloured by popularity) in one layout
    (see :func:`joint_token_layout`)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=token_xy[:, 0], y=token_xy[:, 1], mode="markers", name="token embeddings (sample)",
                               marker=dict(size=3, color="lightgray"), hoverinfo="skip"))
    fig.add_trace(go.Scattergl(x=item_xy[:, 0], y=item_xy[:, 1], mode="markers", name=items_name,
                               marker=dict(size=4, color=np.log1p(popularity), colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="log(1+pop)")),
                               text=hover, hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=f"Tokens and {items_name} in one UMAP layout", xaxis_title="UMAP 1", yaxis_title="UMAP 2")
    return fig


def nearest_token_histogram(views: dict[str, View], names: list[str] | None = None):
    """Overlaid histograms of each item's cosine to its nearest token, one per view.

    Args:
        views: :func:`build_views`'s result.
        names: The views to show (default: every view that has nearest-token cosines).
    """
    import plotly.graph_objects as go

    names = [n for n, v in views.items() if v.nearest_token_cosine is not None] if names is None else names
    fig = go.Figure()
    for name in names:
        view = views[name]
        if view.nearest_token_cosine is not None:
            fig.add_trace(go.Histogram(x=view.nearest_token_cosine, name=name, opacity=0.6, nbinsx=60))
    fig.update_layout(barmode="overlay", title="Cosine similarity of each projected item to its nearest real token",
                      xaxis_title="cosine to nearest token", yaxis_title="items")
    return fig


class Explorer:
    """The interactive explorer behind the chapter's ipywidgets (callbacks work headless).

    Args:
        item_sets: Named item-vector sets (as for :func:`build_views`).
        popularity: Training popularity per item.
        labels: Attribute label per item (see :func:`attribute_labels`).
        hover: Hover text per item.
        user_items: ``user -> (history items, test item, top-10 recommendations)``.
    """

    def __init__(self, item_sets, popularity, labels, hover, user_items, seed: int = 0, n_epochs: int | None = None):
        self.n_epochs = n_epochs
        self.item_sets = item_sets
        self.popularity = np.asarray(popularity)
        self.labels = labels
        self.hover = hover
        self.user_items = user_items
        self.seed = seed
        self._layouts: dict = {}

    def layout(self, stage: str, n_neighbors: int) -> np.ndarray:
        key = (stage, n_neighbors)
        if key not in self._layouts:
            self._layouts[key] = umap_layout(self.item_sets[stage], n_neighbors=n_neighbors, seed=self.seed,
                                             n_epochs=self.n_epochs)
        return self._layouts[key]

    def figure(self, stage: str, colour: str = "popularity", n_neighbors: int = 15, user: int | None = None):
        """The figure for one choice of the controls."""
        import plotly.graph_objects as go

        xy = self.layout(stage, n_neighbors)
        if colour == "popularity":
            marker = dict(size=4, color=np.log1p(self.popularity), colorscale="Viridis", showscale=True,
                          colorbar=dict(title="log(1+pop)"))
        else:
            cats = sorted(set(self.labels))
            marker = dict(size=4, color=[cats.index(l) for l in self.labels], colorscale="Turbo")
        fig = go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, name="items",
                                     text=self.hover, hovertemplate="%{text}<extra></extra>"))
        if user is not None and user in self.user_items:
            history, target, recs = self.user_items[user]
            for idx, name, style in ((history, "history", dict(size=9, color="black", symbol="circle-open")),
                                     (recs, "top-10 recommended", dict(size=10, color="red", symbol="x")),
                                     ([target], "test item", dict(size=14, color="gold", symbol="star"))):
                idx = list(idx)
                fig.add_trace(go.Scattergl(x=xy[idx, 0], y=xy[idx, 1], mode="markers", marker=style, name=name,
                                           text=[self.hover[i] for i in idx], hovertemplate="%{text}<extra></extra>"))
        fig.update_layout(title=f"{stage}, coloured by {colour}, n_neighbors={n_neighbors}"
                                + (f", user {user + 1}" if user is not None else ""),
                          xaxis_title="UMAP 1", yaxis_title="UMAP 2")
        return fig

    def widgets(self, users: list[int]):
        """ipywidgets controls wired to :meth:`figure`; returns (container, controls, output)."""
        import ipywidgets as W
        stage = W.Dropdown(options=list(self.item_sets), description="vectors")
        colour = W.Dropdown(options=["popularity", "attribute"], description="colour")
        neighbours = W.IntSlider(value=15, min=5, max=50, step=5, description="n_neighbors")
        user = W.Dropdown(options=[("none", -1)] + [(f"user_{u + 1}", u) for u in users], description="user")
        out = W.Output()

        def redraw(_=None):
            fig = self.figure(stage.value, colour.value, neighbours.value, None if user.value < 0 else user.value)
            # replace the output's content directly: capturing display() inside an observer
            # (``with out:``) depends on the frontend and can stall a headless kernel
            out.outputs = ()
            out.append_display_data(as_html(fig, height=520))

        for control in (stage, colour, neighbours, user):
            control.observe(redraw, names="value")
        redraw()
        box = W.VBox([W.HBox([stage, colour]), W.HBox([neighbours, user]), out])
        return box, {"stage": stage, "colour": colour, "n_neighbors": neighbours, "user": user}, out
