"""llmrec-lite: collaborative-filtering embeddings projected into an LLM's input space.

The package holds the method and what the chapters need to show it; ``lab/`` beside it (never
imported here) holds the records behind the profiles' settings. Modules, one concept each:

- :mod:`llmrec_lite.registry`: the dataset registry, download and checksum checks.
- :mod:`llmrec_lite.data`: parsers, 5-core filter, item indexing, dataset statistics.
- :mod:`llmrec_lite.split`: the leave-one-out split and training samples.
- :mod:`llmrec_lite.wals`: weighted ALS (reference, batched and CG solvers; ``implicit`` backend).
- :mod:`llmrec_lite.metrics`: ranking metrics (HR@K, NDCG@K).
- :mod:`llmrec_lite.profiles`: every hyper-parameter of the ``cpu``, ``gpu`` and ``smoke`` profiles.
- :mod:`llmrec_lite.settings`: one training stage's settings, built from a profile, and its step count.
- :mod:`llmrec_lite.variants`: typed identities (output side and CF embeddings; stages; targets).
- :mod:`llmrec_lite.prompts`: templates rendered into slots and text; :class:`~llmrec_lite.prompts.PromptEncoder`.
- :mod:`llmrec_lite.fusion`: the fusion model and its two output sides.
- :mod:`llmrec_lite.batching`, :mod:`llmrec_lite.train`: training batches; the training loop.
- :mod:`llmrec_lite.checkpoints`: checkpoints and finished stages on disk.
- :mod:`llmrec_lite.runs`: the run layer (a run directory, its data, factors, stages and trained models).
- :mod:`llmrec_lite.evaluate`, :mod:`llmrec_lite.recommend`: catalogue ranking; the ``recommend`` entry point.
- :mod:`llmrec_lite.device`: CPU/GPU selection.
"""

__version__ = "0.1.0"
