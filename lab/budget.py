"""Readers of the text-id budget curve (``benchmarks/text_id_budget.py``, made by
:func:`lab.runners.text_id_budget_curve`): a table, what the curve says, and a figure.

Every number read here was measured on validation targets; nothing is chosen from it.
"""

from __future__ import annotations

from llmrec_lite.variants import TEXT_ID, TEXT_ID_TEXT, Variant


def budget_table(record: dict):
    """One row per measured point: variant, budget, prompts, steps, training minutes, final
    training loss, validation HR@10 and NDCG@10 with their intervals, distinct items ranked
    first, and the paired HR@10 difference from popularity (its verdict)."""
    import pandas as pd

    rows = []
    for p in record["points"]:
        vs = p["- popularity"]["hr@10"]
        rows.append({"variant": p["label"], "budget": p["budget"], "prompts": p["prompts"], "steps": p["steps"],
                     "train minutes": p["train_minutes"], "final loss": p["final_loss_mean_last_10pct"],
                     "HR@10": p["valid"]["hr@10"], "HR@10 95 %": _interval(p["hr@10_ci95"]),
                     "NDCG@10": p["valid"]["ndcg@10"], "NDCG@10 95 %": _interval(p["ndcg@10_ci95"]),
                     "distinct top-1": p["distinct_top1"],
                     "HR@10 - popularity": vs["difference"], "vs popularity": vs["verdict"]})
    return pd.DataFrame(rows)


def budget_readings(record: dict) -> dict:
    """What the curve says, as numbers.

    Returns:
        ``popularity_hr@10``; per variant name (``text-id``, ``text-id-text``): ``measured``
        (budgets), ``above_popularity`` (the smallest budget whose HR@10 is above
        popularity's), ``passes_popularity`` (the smallest whose paired interval against
        popularity lies above zero; ``None``: none yet); and ``cf_separates`` (the smallest
        budget where CF - no CF on HR@10 has an interval clear of zero, with its verdict;
        ``None``: none yet), ``cf_verdicts`` (budget -> verdict).
    """
    readings = {"popularity_hr@10": record["popularity"]["hr@10"], "users": record["users"]}
    for name in record.get("variants") or [TEXT_ID.name, TEXT_ID_TEXT.name]:
        mine = sorted((p for p in record["points"] if p["variant"] == name), key=lambda p: p["budget"])
        readings[name] = {
            "measured": [p["budget"] for p in mine],
            "above_popularity": next((p["budget"] for p in mine
                                      if p["valid"]["hr@10"] > record["popularity"]["hr@10"]), None),
            "passes_popularity": next((p["budget"] for p in mine if p["- popularity"]["hr@10"]["verdict"] == "above"),
                                      None),
        }
    pairs = record.get("cf - no cf", [])
    readings["cf_verdicts"] = {row["budget"]: row["hr@10"]["verdict"] for row in pairs}
    first = next((row for row in pairs if row["hr@10"]["verdict"] != "not separated"), None)
    readings["cf_separates"] = None if first is None else {"budget": first["budget"],
                                                            "verdict": first["hr@10"]["verdict"]}
    return readings


def budget_words(record: dict) -> str:
    """:func:`budget_readings` in a sentence or two."""
    r = budget_readings(record)
    parts = []
    for name in record.get("variants") or [TEXT_ID.name, TEXT_ID_TEXT.name]:
        mine = r[name]
        label = Variant.parse(name).label
        if not mine["measured"]:
            parts.append(f"{label}: no point measured yet")
        elif mine["passes_popularity"] is not None:
            parts.append(f"{label} passes popularity (interval above zero) from {mine['passes_popularity']:,} prompts")
        elif mine["above_popularity"] is not None:
            parts.append(f"{label} is above popularity from {mine['above_popularity']:,} prompts, within noise up to "
                         f"{max(mine['measured']):,}")
        else:
            parts.append(f"{label} stays at or below popularity up to {max(mine['measured']):,} prompts")
    if not r["cf_verdicts"]:
        cf = "no budget has both variants yet"
    elif r["cf_separates"] is None:
        cf = f"CF embeddings do not separate from none at any budget up to {max(r['cf_verdicts']):,} prompts"
    else:
        cf = (f"CF embeddings first separate from none at {r['cf_separates']['budget']:,} prompts "
              f"({r['cf_separates']['verdict']} zero)")
    return (f"On {r['users']} validation users (popularity HR@10 {r['popularity_hr@10']:.4f}): "
            + "; ".join(parts) + f". {cf[0].upper() + cf[1:]}.")


def budget_figure(record: dict):
    """Validation HR@10 (95 % intervals) against training prompts (log axis), one line per
    variant, popularity's HR@10 and interval as a band."""
    import plotly.graph_objects as go

    fig = go.Figure()
    pop = record["popularity"]
    budgets = sorted({p["budget"] for p in record["points"]}) or record.get("budgets", [1])
    lo, hi = pop["hr@10_ci95"]
    fig.add_trace(go.Scatter(x=[min(budgets), max(budgets), max(budgets), min(budgets)], y=[lo, lo, hi, hi],
                             fill="toself", fillcolor="rgba(127,127,127,0.2)", line=dict(width=0), hoverinfo="skip",
                             showlegend=False))
    fig.add_trace(go.Scatter(x=[min(budgets), max(budgets)], y=[pop["hr@10"]] * 2, mode="lines", name="popularity",
                             line=dict(color="gray", dash="dash")))
    palette = {TEXT_ID.name: "#d62728", TEXT_ID_TEXT.name: "#1f77b4"}
    for name in record.get("variants") or [TEXT_ID.name, TEXT_ID_TEXT.name]:
        mine = sorted((p for p in record["points"] if p["variant"] == name), key=lambda p: p["budget"])
        if not mine:
            continue
        y = [p["valid"]["hr@10"] for p in mine]
        fig.add_trace(go.Scatter(
            x=[p["budget"] for p in mine], y=y, mode="lines+markers", name=Variant.parse(name).label,
            line=dict(color=palette.get(name)),
            error_y=dict(type="data", symmetric=False, array=[p["hr@10_ci95"][1] - v for p, v in zip(mine, y)],
                         arrayminus=[v - p["hr@10_ci95"][0] for p, v in zip(mine, y)]),
            customdata=[[p["distinct_top1"], p["train_minutes"], p["final_loss_mean_last_10pct"]] for p in mine],
            hovertemplate="%{x:,} prompts: HR@10 %{y:.4f}<br>distinct top-1 %{customdata[0]}<br>"
                          "%{customdata[1]:.1f} training minutes, final loss %{customdata[2]:.3f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="training prompts in all (both tasks and stages)")
    fig.update_yaxes(title_text=f"validation HR@10 ({record['users']} users, beam search)")
    fig.update_layout(title=f"Text-id side against its budget ({record['dataset']}, {record['profile']} profile)")
    return fig


def _interval(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"
