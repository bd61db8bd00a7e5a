"""The lab: how the profiles' settings were chosen, kept apart from the method.

- :mod:`lab.catalogue`: the candidates each record tries (data: ``candidates.json``).
- :mod:`lab.runners`: the runners that train candidates and score them on validation targets only.
- :mod:`lab.records`: reading the records (rankings, each record's rule, tables, figures).
- :mod:`lab.decisions`: the table of every chosen setting (``DECISIONS.md``), made from the records.

The package :mod:`llmrec_lite` never imports the lab; the lab, the benchmarks and the
chapters that show a record import the package.
"""
