"""Locust load tests for livecart: hosts, viewers and buyers of one live stream.

`loadtest/locustfile.py` is what Locust runs; `python -m loadtest.check` reads whether the
invariants held afterwards. See loadtest/README.md.
"""
