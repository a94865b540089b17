"""``make bench-peers``: lifeline side by side with keepalived, BFD, mwan3 and a naive ping loop.

Each peer drives the lab site's default route between fibre-a (primary) and fibre-b (backup)
its own way, in a fresh lab per trial, and meets the same faults and the same data-plane
stream. ``base`` holds what they share (the ``Peer`` protocol, the route watch, the probe
paths a hand-made failover needs), one module per peer starts it (``lifeline``,
``keepalived``, ``bfd``, ``mwan3``, ``naive``), ``scenarios`` runs the trials, ``report``
turns results into the table and ``BENCHMARKS.md``, and ``run`` is the command line
(``python -m tests.bench.peers --help``).
"""
