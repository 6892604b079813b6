"""The metric and SLO catalogue: the one place metric names, labels, help, units, SLO
objectives, thresholds and alerts are declared. Collector families, Prometheus and Grafana
rules, dashboards and the README's metric table are generated from it."""
