"""perfgen's Grafana dashboards, built from Python data (see build.py) and provisioned as JSON."""
