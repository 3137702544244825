"""The load test against a deployment running with LIVE_ADMIN_KEY: streams and viewers
created with the key (here from LOCUST_ADMIN_KEY, Locust's form of `--admin-key`), each
viewer with an external_id of its own, and no sign-up limit in the way."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from conftest import ServiceProcess, service_env
from helpers.locust import assert_a_clean_run, check, run_locust

# Fault, load and concurrency runs: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

ADMIN_KEY = "load-" + secrets.token_hex(16)


def test_the_load_test_runs_against_an_admin_key_deployment(
    redis_url: str, deployment_database_url: str, tmp_path: Path
) -> None:
    env = service_env(
        redis_url,
        deployment_database_url,
        LIVE_ADMIN_KEY=ADMIN_KEY,
        LIVE_SIGNUP_PER_MIN="1",  # the admin key is never limited
        LIVE_DRAIN_GROUP=f"lt-{secrets.token_hex(4)}",
        LIVE_LOG_LEVEL="warning",
        LOCUST_ADMIN_KEY=ADMIN_KEY,  # read by the locust processes run_locust starts
    )
    svc = ServiceProcess(env=env).start(tmp_path)
    try:
        run = run_locust(svc, tmp_path, seconds=8)
        assert_a_clean_run(run)
        assert int(run.stats["POST /api/viewers"]["Failure Count"]) == 0
        done = check(run)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        svc.stop()
