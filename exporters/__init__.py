"""tell: Prometheus metrics, HTTP API and status, Alertmanager push."""
