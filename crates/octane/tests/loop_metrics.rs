//! Loops report iterations, checkpoints, their durations and state sizes
//! through the `metrics` facade, labelled by workflow name.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use support::loops::{Counting, CountingLoop};
use support::{fast_worker, unique, wait_output, TestDb};

/// Totals per metric name and `workflow` label: counter sums, histogram
/// sample counts.
#[derive(Default)]
struct Totals(Mutex<HashMap<String, Arc<Total>>>);

#[derive(Default)]
struct Total(AtomicU64);

impl CounterFn for Total {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

impl HistogramFn for Total {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

static TOTALS: LazyLock<Arc<Totals>> = LazyLock::new(Default::default);

impl Totals {
    fn entry(&self, key: &Key) -> Arc<Total> {
        let workflow = key
            .labels()
            .find(|l| l.key() == "workflow")
            .map(|l| l.value().to_string());
        let name = format!("{}{{{}}}", key.name(), workflow.unwrap_or_default());
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str, workflow: &str) -> u64 {
        let k = format!("{name}{{{workflow}}}");
        self.0
            .lock()
            .unwrap()
            .get(&k)
            .map_or(0, |t| t.0.load(Ordering::Relaxed))
    }
}

struct TotalsRecorder;

impl Recorder for TotalsRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(TOTALS.entry(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(TOTALS.entry(key))
    }
}

/// The recorder is global to this test binary: store variants take turns
/// and compare before and after.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const METRICS: [&str; 5] = [
    "octane_loop_iterations_total",
    "octane_loop_iteration_seconds",
    "octane_loop_checkpoints_total",
    "octane_loop_state_bytes",
    "octane_loop_checkpoint_seconds",
];

fn snapshot() -> [u64; 5] {
    METRICS.map(|m| TOTALS.get(m, "counting_loop"))
}

async fn loops_count_iterations_and_checkpoints(db: TestDb) {
    let _turn = SERIAL.lock().await;
    let _ = metrics::set_global_recorder(TotalsRecorder);
    let before = snapshot();
    let engine = db.engine().await.register::<CountingLoop>();
    let worker = fast_worker(&engine);
    let input = Counting::new(&unique("metrics"), 45, 20);
    let id = engine
        .dispatch::<CountingLoop>(input.clone())
        .await
        .unwrap();
    assert_eq!(
        wait_output::<CountingLoop>(&engine, id).await,
        input.expected()
    );
    worker.shutdown().await;
    let after = snapshot();
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    // 45 iterations, each timed; checkpoints at the start, 20, 40 and the
    // final record at Break, the state's size reported at the first three;
    // and the checkpoint writes timed.
    assert_eq!(&delta[..4], [45, 45, 4, 3], "{:?}", METRICS);
    assert!(delta[4] >= 1, "checkpoint writes are timed");
}

support::store_tests!(loops_count_iterations_and_checkpoints);
