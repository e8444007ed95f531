//! Prometheus metrics: request counts and latencies per route, database pool usage.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub pool_size: IntGauge,
    pub pool_available: IntGauge,
    pub sign_in_rejected: IntCounterVec,
    pub events_published: IntCounter,
    pub events_unreadable: IntCounter,
    pub relay_errors: IntCounter,
    pub events_handled: IntCounterVec,
    pub jobs: IntGaugeVec,
    pub worker_restarts: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("voronka".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("static metric definition");
        let pool_size =
            IntGauge::new("db_pool_connections", "Open database connections").expect("static");
        let pool_available =
            IntGauge::new("db_pool_available", "Idle database connections").expect("static");
        let sign_in_rejected = IntCounterVec::new(
            Opts::new(
                "sign_in_rejected_total",
                "Sign-in attempts refused, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let events_published =
            IntCounter::new("events_published_total", "Events published by the relay")
                .expect("static");
        let events_unreadable = IntCounter::new(
            "events_unreadable_total",
            "Outbox rows the relay could not read",
        )
        .expect("static");
        let relay_errors =
            IntCounter::new("relay_errors_total", "Relay batches that failed to publish")
                .expect("static");
        let events_handled = IntCounterVec::new(
            Opts::new(
                "events_handled_total",
                "Events given to subscribers, by outcome",
            ),
            &["subscriber", "outcome"],
        )
        .expect("static metric definition");
        let jobs = IntGaugeVec::new(
            Opts::new("jobs", "Background jobs by queue and state"),
            &["queue", "state"],
        )
        .expect("static metric definition");
        let worker_restarts = IntCounterVec::new(
            Opts::new(
                "job_worker_restarts_total",
                "Job workers started again after a failure of their store, by queue",
            ),
            &["queue"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool_size.clone()),
            Box::new(pool_available.clone()),
            Box::new(sign_in_rejected.clone()),
            Box::new(events_published.clone()),
            Box::new(events_unreadable.clone()),
            Box::new(relay_errors.clone()),
            Box::new(events_handled.clone()),
            Box::new(jobs.clone()),
            Box::new(worker_restarts.clone()),
        ] {
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_available,
            sign_in_rejected,
            events_published,
            events_unreadable,
            relay_errors,
            events_handled,
            jobs,
            worker_restarts,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
