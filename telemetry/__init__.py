"""Metrics and log formatting shared by every layer (live, realtime, inventory, orders).

It sits below them all and imports none of them, so the lower layers can record metrics
without importing `live`."""
