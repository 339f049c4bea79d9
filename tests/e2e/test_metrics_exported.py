"""Every metric the Grafana dashboard and the Prometheus alert rules read (deploy/observability/) is
exported by a running worker or the read API, scraped on their metrics ports."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

from app.config import REPO_ROOT
from tests.support.domain_builders import HOUR, event, plan
from tests.support.helpers import scrape, wait_until
from tests.support.observability import exported_names, referenced_metric_names
from tests.support.pipeline import expected_states
from tools.stack.process import free_port


def test_every_metric_the_dashboard_and_the_alerts_read_is_exported(pipeline):
    worker_port, api_port = free_port(), free_port()
    pipeline.start_worker(metrics_port=worker_port, LEDGER_LAG_INTERVAL_S="1")
    log = open(pipeline.tmp / "api.log", "wb")
    api = subprocess.Popen([sys.executable, "-m", "app", "api", "--port", str(api_port)], cwd=REPO_ROOT,
                           env={**os.environ, **pipeline.env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        events = [event(plan(device_limit=2), at=int(time.time() * 1000) - HOUR, member=f"{uuid.uuid4().hex[:6]}-m")]
        pipeline.publish(events)
        pipeline.wait_for_views(expected_states(events)[0])
        wait_until(lambda: scrape(api_port, "/healthz"), 30, interval=0.2, message="the read API")
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/v1/members/{events[0].member_id}",
                                         headers={"Authorization": "Bearer local-dev-token"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        wait_until(lambda: 'ledger_consumer_group_members{role="decider"} 1.0' in scrape(worker_port), 30,
                   interval=0.5, message="the worker's lag exporter")
        worker_names, api_names = exported_names(scrape(worker_port)), exported_names(scrape(api_port))
        assert "ledger_decider_events_total" in worker_names and "ledger_api_requests_total" in api_names
        referenced = referenced_metric_names()
        assert len(referenced) >= 15
        missing = referenced - worker_names - api_names
        assert not missing, f"the dashboard or the alerts read metrics nobody exports: {sorted(missing)}"
    finally:
        api.terminate()
        api.wait(30)
        log.close()
