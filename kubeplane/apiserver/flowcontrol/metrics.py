"""The `apiserver_flowcontrol_*` series (upstream's util/flowcontrol/metrics/metrics.go:
names, label names, buckets and help texts), served by one prometheus_client collector.

Cost model: the request path only touches plain Python ints, floats and lists (no
locks, no label lookups): a request's (priority_level, flow_schema) `PairStats` is found
once when its classification is cached, histograms are `Hist` (a bisect and two adds),
and gauges such as current_executing_requests are the counters themselves, read at
scrape time. Everything here is owned by the event loop thread; scrape from it too.

Timing ratio histograms (priority_level_seat_utilization,
priority_level_request_utilization, demand_seats, read_vs_write_current_requests) are
upstream's "observations at the end of every nanosecond" of a ratio: each bucket counts
nanoseconds spent at a ratio in its range (sum = ratio x nanoseconds). They are
integrated sample-and-hold: a level integrates when it sees an event at least
`GRANULARITY` (1 ms) after its last integration, and at every scrape; the time since the
last integration is charged to the ratio current at that moment. With events further
apart than 1 ms this is exact; under load the error is bounded by that millisecond.

Borrowing between levels is not implemented: current_limit_seats and target_seats are
the nominal limit, seat_fair_frac is 1, and demand_seats uses the current (= nominal)
limit as its denominator. lower/upper_limit_seats are upstream's configured bounds
(nominal minus lendable, nominal plus borrowing limit).
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

P = "apiserver_flowcontrol_"
GRANULARITY = 0.001

QUEUE_LENGTH_BUCKETS = (0, 10, 25, 50, 100, 250, 500, 1000)
DURATION_BUCKETS = (0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30)
WATCH_COUNT_BUCKETS = (0, 1, 10, 100, 1000, 10000)
WORK_SEATS_BUCKETS = (1, 2, 4, 10)
SEAT_UTILIZATION_BUCKETS = (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1)
REQUEST_UTILIZATION_BUCKETS = (0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.25, 0.5, 0.75, 1)
READ_WRITE_BUCKETS = (0, 0.001, 0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1)
DEMAND_BUCKETS = (0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.7, 2, 2.8, 4, 6)

READ_ONLY, MUTATING = 0, 1
KINDS = ("readOnly", "mutating")     # upstream's request_kind values


class Hist:
    """One histogram series: `counts[i]` is the non-cumulative count of bucket i (the
    last one is +Inf)."""
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.sum += v

    def add(self, v: float, weight: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += weight
        self.sum += v * weight

    def total(self) -> float:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for b, c in zip(self.bounds, self.counts):
            acc += c
            out.append((floatToGoString(b), acc))
        out.append(("+Inf", acc + self.counts[-1]))
        return out


class PairStats:
    """Counters of one (priority_level, flow_schema) pair. The gauges are kept exact
    by the queue set (+ on enqueue/dispatch, - on dispatch/finish)."""
    __slots__ = ("pl", "fs", "dispatched", "rejected", "inqueue_requests", "inqueue_seats",
                 "executing_requests", "executing_seats", "wait_executed", "wait_rejected",
                 "exec_regular", "exec_watch", "queue_length", "work_seats", "watch_count",
                 "no_accommodation")

    def __init__(self, pl: str, fs: str):
        self.pl, self.fs = pl, fs
        self.dispatched = 0
        self.rejected: dict[str, int] = {}
        self.inqueue_requests = 0
        self.inqueue_seats = 0
        self.executing_requests = 0
        self.executing_seats = 0
        self.wait_executed = Hist(DURATION_BUCKETS)     # request_wait_duration_seconds{execute="true"}
        self.wait_rejected = Hist(DURATION_BUCKETS)     # {execute="false"}
        self.exec_regular = Hist(DURATION_BUCKETS)      # request_execution_seconds{type="regular"}
        self.exec_watch = Hist(DURATION_BUCKETS)        # {type="watch"}
        self.queue_length = Hist(QUEUE_LENGTH_BUCKETS)
        self.work_seats = Hist(WORK_SEATS_BUCKETS)
        self.watch_count = Hist(WATCH_COUNT_BUCKETS)
        self.no_accommodation = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class LevelStats:
    """Per priority level: configured limits, the fair-queuing meters, epoch advances
    and the timing ratio histograms. `source` is the level's queue set (read at
    integration: seats_in_use, tot_executing, tot_waiting, seats_waiting, cl_den,
    wait_den)."""
    __slots__ = ("name", "nominal", "lower", "upper", "current", "current_r", "dispatch_r", "latest_s",
                 "s_bounds", "ds_bounds", "epochs", "seat_util", "req_waiting", "req_executing", "demand",
                 "source", "last")

    def __init__(self, name: str, now: float):
        self.name = name
        self.nominal = self.lower = self.upper = self.current = 0
        self.current_r = self.dispatch_r = self.latest_s = 0.0
        self.s_bounds = (0.0, 0.0)
        self.ds_bounds = (0.0, 0.0)
        self.epochs = {True: 0, False: 0}
        self.seat_util = Hist(SEAT_UTILIZATION_BUCKETS)
        self.req_waiting = Hist(REQUEST_UTILIZATION_BUCKETS)
        self.req_executing = Hist(REQUEST_UTILIZATION_BUCKETS)
        self.demand = Hist(DEMAND_BUCKETS)
        self.source: Any = None
        self.last = now

    def integrate(self, now: float) -> None:
        dt = now - self.last
        self.last = now
        qs = self.source
        if dt <= 0 or qs is None:
            return
        ns = dt * 1e9
        den = qs.cl_den
        self.seat_util.add(qs.seats_in_use / den, ns)
        self.req_executing.add(qs.tot_executing / den, ns)
        self.req_waiting.add(qs.tot_waiting / qs.wait_den, ns)
        self.demand.add((qs.seats_in_use + qs.seats_waiting) / den, ns)


class ReadWriteStats:
    """read_vs_write_current_requests: requests waiting and executing by kind, over
    the sum of all levels' queue capacity (waiting) and nominal limits (executing)."""
    __slots__ = ("executing", "waiting", "exec_den", "wait_den", "hists", "last")

    def __init__(self, now: float):
        self.executing = [0, 0]
        self.waiting = [0, 0]
        self.exec_den = 1
        self.wait_den = 1
        self.hists = {(phase, k): Hist(READ_WRITE_BUCKETS) for phase in ("waiting", "executing") for k in (0, 1)}
        self.last = now

    def integrate(self, now: float) -> None:
        dt = now - self.last
        self.last = now
        if dt <= 0:
            return
        ns = dt * 1e9
        h = self.hists
        for k in (0, 1):
            h["executing", k].add(self.executing[k] / self.exec_den, ns)
            h["waiting", k].add(self.waiting[k] / self.wait_den, ns)


class FlowControlMetrics(Collector):
    """All series of one FlowController. Pair and level records live as long as the
    collector (counters stay monotonic across reconfiguration)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.pairs: dict[tuple[str, str], PairStats] = {}
        self.levels: dict[str, LevelStats] = {}
        self.rw = ReadWriteStats(clock())
        self.fair_frac = 1.0

    def pair(self, pl: str, fs: str) -> PairStats:
        p = self.pairs.get((pl, fs))
        if p is None:
            p = self.pairs[pl, fs] = PairStats(pl, fs)
        return p

    def level(self, pl: str) -> LevelStats:
        lv = self.levels.get(pl)
        if lv is None:
            lv = self.levels[pl] = LevelStats(pl, self.clock())
        return lv

    # --- exposition ------------------------------------------------------------------------
    def describe(self) -> Iterator[Any]:
        return iter(self._families(with_samples=False))

    def collect(self) -> Iterator[Any]:
        now = self.clock()
        for lv in self.levels.values():
            lv.integrate(now)
        self.rw.integrate(now)
        return iter(self._families(with_samples=True))

    def _families(self, with_samples: bool) -> list[Any]:
        PF = ["priority_level", "flow_schema"]
        PL = ["priority_level"]
        fams: list[Any] = []

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            f = CounterMetricFamily(P + name, doc, labels=labels)
            fams.append(f)
            return f

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            f = GaugeMetricFamily(P + name, doc, labels=labels)
            fams.append(f)
            return f

        def hist(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
            f = HistogramMetricFamily(P + name, doc, labels=labels)
            fams.append(f)
            return f

        rejected = counter("rejected_requests_total", "Number of requests rejected by API Priority and Fairness "
                           "subsystem", PF + ["reason"])
        dispatched = counter("dispatched_requests_total", "Number of requests executed by API Priority and "
                             "Fairness subsystem", PF)
        inq = gauge("current_inqueue_requests", "Number of requests currently pending in queues of the API "
                    "Priority and Fairness subsystem", PF)
        inq_seats = gauge("current_inqueue_seats", "Number of seats currently pending in queues of the API "
                          "Priority and Fairness subsystem", PF)
        exe = gauge("current_executing_requests", "Number of requests in initial (for a WATCH) or any (for a "
                    "non-WATCH) execution stage in the API Priority and Fairness subsystem", PF)
        seats_doc = ("Concurrency (number of seats) occupied by the currently executing (initial stage for a "
                     "WATCH, any stage otherwise) requests in the API Priority and Fairness subsystem")
        exe_seats = gauge("current_executing_seats", seats_doc, PF)
        in_use = gauge("request_concurrency_in_use", seats_doc, PF)
        wait = hist("request_wait_duration_seconds", "Length of time a request spent waiting in its queue",
                    PF + ["execute"])
        execution = hist("request_execution_seconds", "Duration of initial stage (for a WATCH) or any (for a "
                         "non-WATCH) stage of request execution in the API Priority and Fairness subsystem",
                         PF + ["type"])
        qlen = hist("request_queue_length_after_enqueue", "Length of queue in the API Priority and Fairness "
                    "subsystem, as seen by each request after it is enqueued", PF)
        work = hist("work_estimated_seats", "Number of estimated seats (maximum of initial and final seats) "
                    "associated with requests in API Priority and Fairness", PF)
        watches = hist("watch_count_samples", "count of watchers for mutating requests in API Priority and "
                       "Fairness", PF)
        no_acc = counter("request_dispatch_no_accommodation_total", "Number of times a dispatch attempt resulted "
                         "in a non accommodation due to lack of available seats", PF)
        if with_samples:
            for p in self.pairs.values():
                lv = [p.pl, p.fs]
                for reason, n in p.rejected.items():
                    rejected.add_metric(lv + [reason], n)
                dispatched.add_metric(lv, p.dispatched)
                inq.add_metric(lv, p.inqueue_requests)
                inq_seats.add_metric(lv, p.inqueue_seats)
                exe.add_metric(lv, p.executing_requests)
                exe_seats.add_metric(lv, p.executing_seats)
                in_use.add_metric(lv, p.executing_seats)
                for h, extra, fam in ((p.wait_executed, "true", wait), (p.wait_rejected, "false", wait),
                                      (p.exec_regular, "regular", execution), (p.exec_watch, "watch", execution)):
                    if h.total():
                        fam.add_metric(lv + [extra], h.buckets(), h.sum)
                for h, fam in ((p.queue_length, qlen), (p.work_seats, work), (p.watch_count, watches)):
                    if h.total():
                        fam.add_metric(lv, h.buckets(), h.sum)
                if p.no_accommodation:
                    no_acc.add_metric(lv, p.no_accommodation)

        limit = gauge("request_concurrency_limit", "Nominal number of execution seats configured for each "
                      "priority level", PL)
        nominal = gauge("nominal_limit_seats", "Nominal number of execution seats configured for each priority "
                        "level", PL)
        lower = gauge("lower_limit_seats", "Configured lower bound on number of execution seats available to "
                      "each priority level", PL)
        upper = gauge("upper_limit_seats", "Configured upper bound on number of execution seats available to "
                      "each priority level", PL)
        current = gauge("current_limit_seats", "current derived number of execution seats available to each "
                        "priority level", PL)
        target = gauge("target_seats", "Seat allocation targets", PL)
        cur_r = gauge("current_r", "R(time of last change)", PL)
        disp_r = gauge("dispatch_r", "R(time of last dispatch)", PL)
        latest_s = gauge("latest_s", "S(most recently dispatched request)", PL)
        next_s = gauge("next_s_bounds", "min and max, over queues, of S(oldest waiting request in queue)",
                       PL + ["bound"])
        next_ds = gauge("next_discounted_s_bounds", "min and max, over queues, of S(oldest waiting request in "
                        "queue) - estimated work in progress", PL + ["bound"])
        epochs = counter("epoch_advance_total", "Number of times the queueset's progress meter jumped backward",
                         PL + ["success"])
        seat_util = hist("priority_level_seat_utilization", "Observations, at the end of every nanosecond, of "
                         "utilization of seats for any stage of execution (but only initial stage for WATCHes)",
                         ["phase", "priority_level"])
        req_util = hist("priority_level_request_utilization", "Observations, at the end of every nanosecond, of "
                        "number of requests (as a fraction of the relevant limit) waiting or in any stage of "
                        "execution (but only initial stage for WATCHes)", ["phase", "priority_level"])
        demand = hist("demand_seats", "Observations, at the end of every nanosecond, of (the number of seats "
                      "each priority level could use) / (nominal number of seats for that level)", PL)
        if with_samples:
            for name, lv in self.levels.items():
                n = [name]
                limit.add_metric(n, lv.nominal)
                nominal.add_metric(n, lv.nominal)
                lower.add_metric(n, lv.lower)
                upper.add_metric(n, lv.upper)
                current.add_metric(n, lv.current)
                target.add_metric(n, lv.current)
                cur_r.add_metric(n, lv.current_r)
                disp_r.add_metric(n, lv.dispatch_r)
                latest_s.add_metric(n, lv.latest_s)
                next_s.add_metric([name, "min"], lv.s_bounds[0])
                next_s.add_metric([name, "max"], lv.s_bounds[1])
                next_ds.add_metric([name, "min"], lv.ds_bounds[0])
                next_ds.add_metric([name, "max"], lv.ds_bounds[1])
                for ok, count in lv.epochs.items():
                    if count:
                        epochs.add_metric([name, "true" if ok else "false"], count)
                seat_util.add_metric(["executing", name], lv.seat_util.buckets(), lv.seat_util.sum)
                req_util.add_metric(["waiting", name], lv.req_waiting.buckets(), lv.req_waiting.sum)
                req_util.add_metric(["executing", name], lv.req_executing.buckets(), lv.req_executing.sum)
                demand.add_metric(n, lv.demand.buckets(), lv.demand.sum)

        fair = gauge("seat_fair_frac", "Fair fraction of server's concurrency to allocate to each priority level "
                     "that can use it", [])
        rw = hist("read_vs_write_current_requests", "Observations, at the end of every nanosecond, of the number "
                  "of requests (as a fraction of the relevant limit) waiting or in regular stage of execution",
                  ["phase", "request_kind"])
        if with_samples:
            fair.add_metric([], self.fair_frac)
            for (phase, k), h in self.rw.hists.items():
                rw.add_metric([phase, KINDS[k]], h.buckets(), h.sum)
        return fams
