"""``tlswatch watch``: repeated campaigns with Prometheus metrics (see ``docs/watch.md``)."""
