"""Plot display that works in JupyterLab, Colab and the static HTML book alike.

A figure is emitted as self-contained HTML. The plotly.js library is inlined with the
first figure of a kernel session only, so a rendered page carries it once and stays
interactive without a kernel or an internet connection.
"""

from __future__ import annotations

# IPython is there only in a notebook: imported where a figure is shown.

_plotlyjs_sent = False


def as_html(fig, height: int | None = None):
    """The figure as an :class:`IPython.display.HTML` object (plotly.js inlined the first time)."""
    global _plotlyjs_sent
    from IPython.display import HTML

    if height is not None:
        fig.update_layout(height=height)
    html = fig.to_html(full_html=False, include_plotlyjs=not _plotlyjs_sent, config={"responsive": True})
    _plotlyjs_sent = True
    return HTML(html)


def show(fig, height: int | None = None) -> None:
    """Displays a plotly figure (see the module docstring for why not ``fig.show()``)."""
    from IPython.display import display

    display(as_html(fig, height))


def reset() -> None:
    """Makes the next :func:`show` inline plotly.js again (e.g. after clearing all outputs)."""
    global _plotlyjs_sent
    _plotlyjs_sent = False
