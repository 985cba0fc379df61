"""The status report: health verdicts and their rendering (JSON, HTML, Prometheus)."""
