import numpy as np
import pytest

pytest.importorskip("umap")

from llmrec_lite import explorer as E


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    return np.concatenate([c + rng.normal(size=(40, 16)) for c in centres]).astype(np.float32)


def test_layout_shape_and_seeding(vectors):
    a = E.umap_layout(vectors, n_neighbors=10, seed=1)
    b = E.umap_layout(vectors, n_neighbors=10, seed=1)
    assert a.shape == (120, 2)
    assert np.array_equal(a, b)


def test_measures_in_range(vectors):
    layout = E.umap_layout(vectors, n_neighbors=10, seed=0)
    tw = E.trustworthiness(vectors, layout)
    assert 0.5 < tw <= 1.0  # clustered data lays out well
    tokens = np.random.default_rng(1).normal(size=(50, 16))
    cos = E.nearest_token_cosine(vectors, tokens)
    assert cos.shape == (120,) and np.all(cos <= 1 + 1e-6) and np.all(cos >= -1 - 1e-6)
    exact = E.nearest_token_cosine(tokens[:5], tokens)
    assert np.allclose(exact, 1.0, atol=1e-5)  # a token's nearest token is itself
    norms = E.norm_summary(vectors)
    assert norms["p5"] <= norms["mean"] <= norms["p95"]


def test_views_and_figures(vectors):
    sets = {"a": vectors, "b": vectors[:, :8]}
    views = E.build_views(sets, token_embeddings=np.ones((4, 16)), n_neighbors=10)
    assert views["a"].nearest_token_cosine is not None and views["b"].nearest_token_cosine is None
    pop = np.arange(120)
    labels = ["x" if i % 2 else "y" for i in range(120)]
    hover = [f"item {i}" for i in range(120)]
    fig = E.static_figure(views, pop, labels, hover)
    assert len(fig.layout.updatemenus[0].buttons) == 4
    explorer = E.Explorer(sets, pop, labels, hover, {0: ([1, 2], 3, list(range(10)))})
    f = explorer.figure("a", "attribute", 10, user=0)
    assert [t.name for t in f.data] == ["items", "history", "top-10 recommended", "test item"]


def test_widget_callbacks_headless(vectors):
    pytest.importorskip("ipywidgets")
    explorer = E.Explorer({"a": vectors, "b": vectors}, np.arange(120), ["x"] * 120, [str(i) for i in range(120)],
                          {5: ([1, 2], 3, [4])})
    calls = []
    real = explorer.figure
    explorer.figure = lambda *a, **k: calls.append(a) or real(*a, **k)
    box, controls, out = explorer.widgets(users=[5])
    controls["stage"].value = "b"
    controls["user"].value = 5
    controls["n_neighbors"].value = 20
    assert calls[-1] == ("b", "popularity", 20, 5)
    assert len(calls) == 4  # the first draw plus one per change


# --------------------------------------------------------------------------- inputs and measures


def test_neighbour_popularity_high_when_neighbours_share_popularity():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 5
    vectors = np.concatenate([c + rng.normal(size=(30, 16)) for c in centres])
    popularity = np.repeat([1, 10, 100, 1000, 10000], 30) + rng.integers(0, 3, size=150)
    assert E.neighbour_popularity(vectors, popularity) > 0.8


def test_neighbour_popularity_near_zero_on_random_vectors():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 16))
    popularity = rng.integers(1, 1000, size=500)
    assert abs(E.neighbour_popularity(vectors, popularity)) < 0.25


def test_neighbour_popularity_small_and_degenerate_inputs():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(5, 4))
    assert -1.0 <= E.neighbour_popularity(vectors, np.arange(5), k=50) <= 1.0  # k capped at items - 1
    assert np.isnan(E.neighbour_popularity(vectors, np.ones(5)))  # no variation, no correlation


def test_most_popular_is_stable_and_sorted():
    popularity = np.array([5, 9, 9, 1, 9, 0])
    assert E.most_popular(popularity, 2).tolist() == [1, 2]  # ties broken by item index
    assert E.most_popular(popularity, 4).tolist() == [0, 1, 2, 4]
    assert E.most_popular(popularity, None).tolist() == list(range(6))
    assert E.most_popular(popularity, 99).tolist() == list(range(6))


class _Data:
    def __init__(self, sequences, num_items):
        self.sequences, self.num_items = sequences, num_items

    def item_popularity(self, sequences=None):
        counts = np.zeros(self.num_items, dtype=np.int64)
        np.add.at(counts, np.concatenate(sequences if sequences is not None else self.sequences), 1)
        return counts

    def item_text(self, item):
        return f"item_{item + 1}"


def _fake_run(num_items=8, dim=4, hidden=6):
    from types import SimpleNamespace

    import torch

    train = [np.array([0, 1, 1, 2]), np.array([1, 2, 3]), np.array([2, 1, 5])]
    tokens = torch.randn(20, hidden, generator=torch.Generator().manual_seed(0))
    return SimpleNamespace(
        data=_Data(train, num_items),
        split=SimpleNamespace(train=train, history=lambda user, targets="test": np.array([0, 1, 7])),
        wals=SimpleNamespace(item_factors=torch.randn(num_items, dim, generator=torch.Generator().manual_seed(1))),
        backbone=SimpleNamespace(token_embeddings=lambda: tokens),
    )


def test_explorer_inputs_from_a_run():
    import torch

    run = _fake_run()
    torch.manual_seed(0)
    models = {2: torch.nn.Module(), 1: torch.nn.Module()}
    for m in models.values():
        m.projectors = torch.nn.Module()
        m.projectors.item = torch.nn.Linear(4, 6)
    attributes = {1: [7, 3], 2: [7], 5: [3]}
    inputs = E.explorer_inputs(run, models, num_items=3, attributes=attributes)
    # popularity over training: item 1 four times, item 2 three, then items 0, 3 and 5 once
    assert inputs.shown.tolist() == [0, 1, 2]
    assert inputs.popularity.tolist() == [1, 4, 3]
    assert list(inputs.item_sets) == [E.WALS_VIEW, E.projected_view(1), E.projected_view(2)]
    with torch.no_grad():
        expected = models[2].projectors.item(run.wals.item_factors[:3]).numpy()
    assert np.allclose(inputs.item_sets[E.projected_view(2)], expected)
    assert inputs.item_sets[E.WALS_VIEW].shape == (3, 4) and inputs.tokens.shape == (20, 6)
    assert inputs.position == {0: 0, 1: 1, 2: 2}
    assert inputs.labels == ["other", "attribute 7", "attribute 7"]
    assert inputs.hover[1] == "item_2<br>popularity 4<br>attributes [7, 3]"
    assert inputs.rows_of([2, 7, 0]) == [2, 0]  # item 7 is not laid out
    sample = inputs.token_sample(5, seed=3)
    assert sample.shape == (5, 6) and np.array_equal(sample, inputs.token_sample(5, seed=3))
    assert inputs.token_sample(99).shape == (20, 6)


def test_highlights_keep_users_whose_test_item_is_shown():
    from types import SimpleNamespace

    run = _fake_run()
    inputs = E.explorer_inputs(run, {}, num_items=3, attributes={})
    evaluation = SimpleNamespace(users=np.array([0, 1, 2]), gold=np.array([2, 6, 1]),
                                 top_items=np.array([[1, 6], [0, 2], [4, 5]]))
    highlights = inputs.highlights(evaluation, run.split)
    assert highlights == {0: ([0, 1], 2, [1]), 2: ([0, 1], 1, [])}  # user 1's test item is not laid out
    assert list(inputs.highlights(evaluation, run.split, limit=1)) == [0]


def test_measures_table_and_token_figures(vectors):
    sets = {"a": vectors, "b": vectors[:, :8]}
    tokens = np.random.default_rng(0).normal(size=(30, 16))
    views = E.build_views(sets, token_embeddings=tokens, n_neighbors=10)
    table = E.measures_table(views, np.arange(120))
    assert list(table.index) == ["a", "b"] and table.loc["a", "dimension"] == 16
    assert np.isnan(table.loc["b", "nearest-token cosine (mean)"])  # not in the tokens' space
    assert 0.0 <= table.loc["a", "UMAP trustworthiness"] <= 1.0
    assert [t.name for t in E.nearest_token_histogram(views).data] == ["a"]
    token_xy, item_xy = np.zeros((30, 2)), np.ones((120, 2))
    fig = E.token_layout_figure(token_xy, item_xy, np.arange(120), [str(i) for i in range(120)])
    assert [len(t.x) for t in fig.data] == [30, 120]
