"""CronJob: schedules read in a time zone (unit tests of schedule_times, including a
daylight saving change and many missed times), the Job name from the scheduled minute,
and a CronJob firing on the real cluster (created when the session's cluster started,
so the minute boundary has usually passed when this test runs)."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from ctrl_cluster import condition, get, items, wait_for
from kubeplane.controllers.cronjob import job_name, schedule_times

UTC = dt.timezone.utc


def test_schedule_in_a_time_zone():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    after = dt.datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    now = dt.datetime(2026, 1, 10, 9, 30, tzinfo=UTC)            # 10:30 in Paris (UTC+1 in winter)
    last, n, nxt = schedule_times("0 9 * * *", paris, after, now)
    assert last == dt.datetime(2026, 1, 10, 8, 0, tzinfo=UTC) and n == 1    # 09:00 Paris = 08:00 UTC
    assert nxt.astimezone(UTC) == dt.datetime(2026, 1, 11, 8, 0, tzinfo=UTC)
    last, n, _ = schedule_times("0 9 * * *", UTC, after, now)
    assert last == dt.datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    # summer time: 09:00 Paris is 07:00 UTC
    last, _, _ = schedule_times("0 9 * * *", paris, dt.datetime(2026, 7, 1, tzinfo=UTC),
                                dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert last.astimezone(UTC) == dt.datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    # nothing due yet
    last, n, nxt = schedule_times("*/15 * * * *", UTC, now, now + dt.timedelta(minutes=10))
    assert last is None and n == 0 and nxt.astimezone(UTC) == dt.datetime(2026, 1, 10, 9, 45, tzinfo=UTC)


def test_many_missed_times_keep_the_latest():
    after = dt.datetime(2026, 1, 1, tzinfo=UTC)
    now = dt.datetime(2026, 1, 2, 0, 30, 30, tzinfo=UTC)
    last, n, nxt = schedule_times("* * * * *", UTC, after, now)
    assert n > 100
    assert last.astimezone(UTC) == dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC)
    assert nxt.astimezone(UTC) == dt.datetime(2026, 1, 2, 0, 31, tzinfo=UTC)
    assert job_name("hello", dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC)) == \
        f"hello-{int(dt.datetime(2026, 1, 2, 0, 30, tzinfo=UTC).timestamp()) // 60}"


def test_cronjob_fires(cluster):
    ns = cluster.cron_namespace
    def fired():
        jobs = [j for j in items(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs")
                if (j["metadata"].get("ownerReferences") or [{}])[0].get("kind") == "CronJob"]
        return jobs
    [job, *_] = wait_for(fired, 75, what="a Job made by the CronJob")
    cj = get(cluster, f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick")
    ts = dt.datetime.fromisoformat(job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"])
    assert ts.second == 0 and job["metadata"]["name"] == f"tick-{int(ts.timestamp()) // 60}"
    assert job["metadata"]["labels"]["from"] == "cron"
    wait_for(lambda: (get(cluster, f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick").get("status") or {})
             .get("lastScheduleTime"), 20, what="lastScheduleTime")
    wait_for(lambda: condition(get(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs/{job['metadata']['name']}"),
                               "Complete").get("status") == "True", 60, what="the cron Job completes")
    wait_for(lambda: (get(cluster, f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick").get("status") or {})
             .get("lastSuccessfulTime"), 30, what="lastSuccessfulTime")
    assert cj["spec"]["timeZone"] == "Europe/Paris"
