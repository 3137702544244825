"""Helpers shared by the test modules: processes, HTTP, websocket and drain helpers.

Test modules import from here (or take fixtures from conftest), never from one another.
"""
