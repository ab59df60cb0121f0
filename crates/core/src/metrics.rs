//! Figures for `GET /metrics` (Prometheus text format). What this process did (run durations,
//! model tokens, events written) is counted here; runs by status are read from the database
//! (every node's), live sandboxes from this node's provider.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Services;

/// Upper bounds (seconds) of the run-duration histogram's buckets.
const BUCKETS: [f64; 10] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

struct Counters {
    events_written: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    run_buckets: [AtomicU64; BUCKETS.len()],
    run_count: AtomicU64,
    run_millis: AtomicU64,
    takeovers: AtomicU64,
}

static COUNTERS: Counters = Counters {
    events_written: AtomicU64::new(0),
    prompt_tokens: AtomicU64::new(0),
    completion_tokens: AtomicU64::new(0),
    run_buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
    run_count: AtomicU64::new(0),
    run_millis: AtomicU64::new(0),
    takeovers: AtomicU64::new(0),
};

/// This node took over a run whose node stopped renewing its lease.
pub(crate) fn lease_takeover() {
    COUNTERS.takeovers.fetch_add(1, Ordering::Relaxed);
}

/// One event stored by this process.
pub(crate) fn event_written() {
    COUNTERS.events_written.fetch_add(1, Ordering::Relaxed);
}

/// A run this process executed ended (any way), after `secs`, with the tokens its model calls
/// used.
pub(crate) fn run_ended(secs: f64, prompt_tokens: u64, completion_tokens: u64) {
    for (i, le) in BUCKETS.iter().enumerate() {
        if secs <= *le {
            COUNTERS.run_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    COUNTERS.run_count.fetch_add(1, Ordering::Relaxed);
    COUNTERS
        .run_millis
        .fetch_add((secs * 1000.0) as u64, Ordering::Relaxed);
    COUNTERS
        .prompt_tokens
        .fetch_add(prompt_tokens, Ordering::Relaxed);
    COUNTERS
        .completion_tokens
        .fetch_add(completion_tokens, Ordering::Relaxed);
}

impl Services {
    /// Every figure in the Prometheus text exposition format.
    pub async fn metrics_text(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str("# HELP codeflux_runs Runs by status, in the whole database (every node).\n# TYPE codeflux_runs gauge\n");
        match codeflux_db::run_counts(self.db()).await {
            Ok(counts) => {
                for status in codeflux_protocol::RunStatus::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    let _ = writeln!(out, "codeflux_runs{{status=\"{}\"}} {n}", status.as_str());
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting runs for /metrics"),
        }
        out.push_str("# HELP codeflux_run_duration_seconds How long the runs this node executed took.\n# TYPE codeflux_run_duration_seconds histogram\n");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "codeflux_run_duration_seconds_bucket{{le=\"{le}\"}} {}",
                load(&COUNTERS.run_buckets[i])
            );
        }
        let count = load(&COUNTERS.run_count);
        let _ = writeln!(
            out,
            "codeflux_run_duration_seconds_bucket{{le=\"+Inf\"}} {count}\ncodeflux_run_duration_seconds_sum {}\ncodeflux_run_duration_seconds_count {count}",
            load(&COUNTERS.run_millis) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP codeflux_model_tokens_total Tokens the model provider counted for this node's runs.\n# TYPE codeflux_model_tokens_total counter\ncodeflux_model_tokens_total{{kind=\"prompt\"}} {}\ncodeflux_model_tokens_total{{kind=\"completion\"}} {}",
            load(&COUNTERS.prompt_tokens),
            load(&COUNTERS.completion_tokens)
        );
        let _ = writeln!(
            out,
            "# HELP codeflux_live_sandboxes Sandboxes live on this node.\n# TYPE codeflux_live_sandboxes gauge\ncodeflux_live_sandboxes {}",
            self.sandboxes().live_sandboxes()
        );
        let _ = writeln!(
            out,
            "# HELP codeflux_events_written_total Run events this node stored.\n# TYPE codeflux_events_written_total counter\ncodeflux_events_written_total {}",
            load(&COUNTERS.events_written)
        );
        let _ = writeln!(
            out,
            "# HELP codeflux_lease_takeovers_total Runs this node resumed after their node stopped renewing its lease.\n# TYPE codeflux_lease_takeovers_total counter\ncodeflux_lease_takeovers_total {}",
            load(&COUNTERS.takeovers)
        );
        match self.runs().nodes_alive().await {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "# HELP codeflux_nodes_alive Nodes on this database whose heartbeat is fresh.\n# TYPE codeflux_nodes_alive gauge\ncodeflux_nodes_alive {n}"
                );
            }
            Err(e) => tracing::warn!(error = %e, "counting nodes for /metrics"),
        }
        out
    }
}
