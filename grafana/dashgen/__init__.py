"""lifeline's Grafana dashboards as code: ``python -m grafana.dashgen`` writes
``grafana/dashboards/*.json`` from these modules, ``--check`` fails naming each stale file.

Built with Grafana's own SDK (``grafana-foundation-sdk``, pinned to Grafana 11.6), a
development dependency only: the JSON is committed, so neither Grafana nor ``pip install
lifeline`` needs the SDK, and a test keeps the JSON and the code in step.

Every query is plain PromQL against lifeline's own series (``exporters/metrics.py``), the
recording rules of ``grafana/alerts/lifeline.rules.yaml``, ``up``, ``ALERTS`` and
``process_*``, with only these Grafana variables, so a test can substitute them and run
each expression in a real Prometheus (``queries.VARIABLES``):

- ``$site`` (every dashboard), ``$link`` (link quality), ``$trunk`` (trunks and DIDs):
  regex matchers (``site=~"$site"``), multi-value, "All" is ``.*``;
- ``$__rate_interval`` (in ``rate``/``increase`` over time), ``$__range`` (totals over the
  dashboard's time range), ``$__interval``.

``$datasource`` appears only as the panels' data source, never in an expression.
"""
