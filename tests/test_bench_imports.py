"""The benchmarks and the load test import the project's modules by name; a refactor
that moves a name must not leave a benchmark that cannot start (bench/bare_buy.py once
lost its script loader this way and the buy benchmark failed at its first step)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"live", "realtime", "inventory", "orders", "rediskit", "outage", "telemetry",
           "domain"}


def test_every_project_name_the_benchmarks_import_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The benchmarks import each other by file name (bench/ is on their path).
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    local = {path.stem for path in (ROOT / "bench").glob("*.py")}
    missing: list[str] = []
    files = [*(ROOT / "bench").glob("*.py"), *(ROOT / "loadtest").rglob("*.py")]
    assert len(files) > 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            if node.module.split(".")[0] not in PROJECT | local:
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path.relative_to(ROOT)}: {node.module}.{alias.name}")
    assert not missing, missing
