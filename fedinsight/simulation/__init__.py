"""Simulations: one machine plays every partner and the coordinator, for any registered task.

:func:`fedinsight.simulation.run.simulate` is what ``fedinsight simulate <task>`` and the Python API call;
:mod:`.federation` turns ``--dataset NAME|FOLDER`` into partner folders (used in place).
"""
