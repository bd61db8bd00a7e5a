"""The results chapter's figures (plotly), built from ``results.json``.

plotly is one of the book's optional extras: imported where a figure is made.
"""

from __future__ import annotations

from llmrec_lite.results.rows import MAIN_TASK, SASREC_LABEL, classic_row, main_rows

__all__ = ["hr10_figure", "target_distance_figure", "sasrec_curve_figure"]


def hr10_figure(rows: list[dict], references: list[dict], title: str):
    """HR@10 of the main rows as bars with their 95% bootstrap intervals, published numbers
    (sequential task, unmasked rule) as grey diamonds.

    Args:
        rows: ``results.json``'s ``rows``.
        references: :func:`llmrec_lite.book.reference_results` for the same dataset.
        title: Figure title.
    """
    import plotly.graph_objects as go

    shown = main_rows(rows)
    values = [r["hr@10"] for r in shown]
    cis = [r.get("hr@10_ci95") for r in shown]
    err_hi = [ci[1] - v if isinstance(ci, (list, tuple)) else 0.0 for ci, v in zip(cis, values)]
    err_lo = [v - ci[0] if isinstance(ci, (list, tuple)) else 0.0 for ci, v in zip(cis, values)]
    fig = go.Figure(go.Bar(x=values, y=[r["model"] for r in shown], orientation="h", name="this build",
                           error_x=dict(type="data", array=err_hi, arrayminus=err_lo)))
    # a published row without HR@10 (the paper's SASRec on Beauty reports HR@5 only) has no marker
    published = [r for r in references if r["rule"] == "unmasked" and r["task"] == MAIN_TASK
                 and r.get("hr@10") is not None]
    fig.add_trace(go.Scatter(x=[r["hr@10"] for r in published], y=[r["model"] for r in published], mode="markers",
                             marker=dict(symbol="diamond", size=9, color="gray"), name="published (see sources)"))
    fig.update_layout(title=title, xaxis_title="HR@10", yaxis=dict(autorange="reversed", automargin=True),
                      legend=dict(orientation="h", y=-0.15))
    return fig


def target_distance_figure(rows: list[dict], title: str):
    """HR@10 of each model at each target of :func:`llmrec_lite.evaluate.accuracy_by_target_distance`,
    oldest target first, one line per model (solid: unmasked; dotted: history masked)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: -r["steps_back"])
        x = [r["target"] for r in mine]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=x, y=[r["hr@10"] for r in mine], mode="lines+markers", name=model,
                                 line=dict(color=color)))
        fig.add_trace(go.Scatter(x=x, y=[r["hr@10_masked"] for r in mine], mode="lines+markers",
                                 name=f"{model}, masked", line=dict(dash="dot", color=color)))
    fig.update_layout(title=title, yaxis_title="HR@10", legend=dict(orientation="h", y=-0.2))
    return fig


def sasrec_curve_figure(results: dict[str, dict], names: dict[str, str] | None = None):
    """SASRec's validation HR@10 per epoch on every dataset (from its row's ``curve``), the
    epoch early stopping kept marked.

    Args:
        results: ``{dataset: results.json dictionary}``.
        names: ``{dataset: display name}`` (default: the keys).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for dataset, result in results.items():
        row = classic_row(result["rows"], SASREC_LABEL)
        curve = row.get("curve") or []
        name = (names or {}).get(dataset, dataset)
        fig.add_trace(go.Scatter(x=[c["epoch"] for c in curve], y=[c["valid_hr@10"] for c in curve], mode="lines",
                                 name=name))
        kept = [c for c in curve if c["epoch"] == row.get("best_epoch")]
        if kept:
            fig.add_trace(go.Scatter(x=[kept[0]["epoch"]], y=[kept[0]["valid_hr@10"]], mode="markers",
                                     marker=dict(size=10, symbol="star"), name=f"{name}: epoch kept"))
    fig.update_layout(title="SASRec: validation HR@10 per epoch (star: the epoch early stopping kept)",
                      xaxis_title="epoch", yaxis_title="validation HR@10 (unmasked)",
                      legend=dict(orientation="h", y=-0.2))
    return fig
