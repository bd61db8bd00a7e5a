"""What produced a results file (dataset, users, backbone, profile, hardware), stated once
above its tables instead of in every row."""

from __future__ import annotations

__all__ = ["hardware_label", "backbone_label", "provenance", "users_label", "table_label"]


def hardware_label(machine: dict) -> str:
    """A short name for the machine a run was made on: its GPU, else its CPU model and threads.

    Args:
        machine: :func:`llmrec_lite.device.describe_machine`'s dictionary (``results.json``'s
            ``machine``).
    """
    if machine.get("gpu"):
        return str(machine["gpu"])
    cpu = machine.get("cpu_model") or machine.get("processor") or "CPU"
    return f"{cpu} ({machine.get('torch_threads', '?')} threads)"


def backbone_label(source: str) -> str:
    """The backbone's name without its hub organisation or local folder (``SmolLM2-135M``)."""
    return str(source).rstrip("/").split("/")[-1]


def provenance(result: dict) -> dict:
    """What produced a results file, stated once above its tables instead of in every row.

    Returns:
        ``{"dataset", "profile", "backbone", "hardware", "indexing"}`` as display strings.
    """
    return {"dataset": result["dataset"], "profile": result["profile"], "backbone": backbone_label(result["backbone"]),
            "hardware": hardware_label(result.get("machine", {})), "indexing": result.get("indexing", "-")}


def users_label(result: dict) -> str:
    """Which test users a dataset's rows were evaluated on, in words.

    ``"all 1,090 users"`` or ``"2,000 of 22,363 users: one seeded subset ..."`` (the run's
    ``users_rule``), plus the rows evaluated on fewer users (text-id rows: beam search is the
    slow part), so that a reader of one table knows what its HR@10s average over.

    Args:
        result: A ``results.json`` dictionary (``num_users``, ``evaluated_users``, ``users_rule``;
            results written before those keys fall back to the rows' ``users``).
    """
    rows = result.get("rows", [])
    num, evaluated = result.get("num_users"), result.get("evaluated_users")
    if num is None or evaluated is None:
        counts = sorted({int(r["users"]) for r in rows if r.get("users")}, reverse=True)
        return f"{' or '.join(f'{c:,}' for c in counts) or 'an unrecorded number of'} users (see the users column)"
    if evaluated >= num:
        text = f"all {num:,} users"
    else:
        text = f"{evaluated:,} of {num:,} users: {result.get('users_rule', 'a seeded subset')}"
    fewer = [r for r in rows if r.get("users") is not None and r["users"] < evaluated]
    for output in dict.fromkeys(r.get("output") or r["variant"] for r in fewer):
        users = min(r["users"] for r in fewer if (r.get("output") or r["variant"]) == output)
        text += f"; {output} rows on {users:,} of them"
    return text


def table_label(result: dict, display_name: str | None = None) -> str:
    """The line printed above one dataset's main table: dataset, users evaluated, backbone,
    profile and hardware (the table itself keeps to metrics).

    Args:
        result: A ``results.json`` dictionary.
        display_name: The dataset's name as the book writes it (default: its key).
    """
    made_by = provenance(result)
    return (f"{display_name or result['dataset']}: {users_label(result)}. Backbone {made_by['backbone']}, "
            f"profile {made_by['profile']}, {made_by['hardware']}.")
