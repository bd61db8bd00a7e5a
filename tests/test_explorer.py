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
