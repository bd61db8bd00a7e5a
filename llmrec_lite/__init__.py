"""llmrec-lite: collaborative-filtering embeddings projected into an LLM's input space.

The package is the single home of the book's reusable code. Modules, one concept each:

- :mod:`llmrec_lite.registry`: the dataset registry, download and checksum checks.
- :mod:`llmrec_lite.data`: parsers, 5-core filter, item indexing, dataset statistics.
- :mod:`llmrec_lite.split`: the leave-one-out split and training samples.
- :mod:`llmrec_lite.wals`: weighted ALS (reference, batched and CG solvers; ``implicit`` backend).
- :mod:`llmrec_lite.metrics`: ranking metrics (HR@K, NDCG@K).
- :mod:`llmrec_lite.profiles`: every hyper-parameter of the ``cpu``, ``gpu`` and ``smoke`` profiles.
- :mod:`llmrec_lite.device`: CPU/GPU selection.
"""

__version__ = "0.1.0"
