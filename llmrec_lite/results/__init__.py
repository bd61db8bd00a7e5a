"""What chapter 7 shows, built from the ``results.json`` a run writes.

:func:`llmrec_lite.pipeline.run_pipeline` writes one dictionary per run directory: the
training summary of every stage (``training``), one row per evaluated model, task and
template (``rows``) and the paired comparisons (``paired``). This package turns them into
the chapter's tables, figures and sentences, one module per job:

- :mod:`~llmrec_lite.results.rows`: which rows and comparisons a profile's table has, their
  names (the one definition the pipeline imports too) and how to find one;
- :mod:`~llmrec_lite.results.provenance`: what produced a results file, stated once above it;
- :mod:`~llmrec_lite.results.tables`: the tables (pandas);
- :mod:`~llmrec_lite.results.figures`: the figures (plotly);
- :mod:`~llmrec_lite.results.verdicts`: words and sentences computed from intervals;
- :mod:`~llmrec_lite.results.facts`: one dictionary of glued values per section of chapter 7.

The names below are re-exported, so ``from llmrec_lite import results as R; R.main_table``
reads as before.
"""

from llmrec_lite.results.facts import *  # noqa: F401,F403
from llmrec_lite.results.figures import *  # noqa: F401,F403
from llmrec_lite.results.provenance import *  # noqa: F401,F403
from llmrec_lite.results.rows import *  # noqa: F401,F403
from llmrec_lite.results.tables import *  # noqa: F401,F403
from llmrec_lite.results.verdicts import *  # noqa: F401,F403
