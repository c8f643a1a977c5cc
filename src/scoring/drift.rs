//! Drift of live traffic against the model's training traffic
//! ([`crate::model::drift`]): a sample of scored declarations is binned like
//! the baseline, over the last two windows, and the PSI of every feature and
//! score is exported as `parcel_risk_drift_psi{column}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::ModelArtifact;
use crate::model::drift::{DriftBaseline, DriftCounts, PSI_MAJOR, is_history_measure};

/// Sampled declarations per window in the service: PSI covers the current
/// window and the one before, so it follows the last one to two windows of
/// traffic.
pub const DEFAULT_WINDOW: u64 = 50_000;

/// Sampled declarations between two refreshes of the gauges.
const REFRESH: u64 = 1_024;

/// Counts a sample of scored declarations against a model's baseline.
#[derive(Debug)]
pub struct DriftMonitor {
    model: Arc<ModelArtifact>,
    /// One declaration in `sample_every` is counted.
    sample_every: u64,
    /// Sampled declarations per window.
    window: u64,
    seen: AtomicU64,
    windows: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    current: DriftCounts,
    previous: Option<DriftCounts>,
}

/// The PSI of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDrift {
    pub column: String,
    pub psi: f64,
}

impl DriftMonitor {
    /// A monitor for `model`, or none when its artifact has no baseline
    /// (saved before drift was measured).
    pub fn new(model: Arc<ModelArtifact>, sample_every: u64, window: u64) -> Option<Self> {
        let current = model.drift_baseline.as_ref()?.counts();
        Some(Self {
            model,
            sample_every: sample_every.max(1),
            window: window.max(1),
            seen: AtomicU64::new(0),
            windows: Mutex::new(Windows {
                current,
                previous: None,
            }),
        })
    }

    fn baseline(&self) -> &DriftBaseline {
        self.model
            .drift_baseline
            .as_ref()
            .expect("a monitor exists only for a model with a baseline")
    }

    /// Offers a scored declaration's feature row and scores; one in
    /// `sample_every` is counted.
    pub fn observe(&self, row: &[f64], scores: [f64; 3]) {
        if self.seen.fetch_add(1, Ordering::Relaxed) % self.sample_every != 0 {
            return;
        }
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.current.observe(self.baseline(), row, scores);
        let rows = windows.current.rows;
        if rows >= self.window {
            let full = std::mem::replace(&mut windows.current, self.baseline().counts());
            windows.previous = Some(full);
        }
        if rows % REFRESH == 0 {
            let report = self.psi_of(&windows);
            drop(windows);
            export(&report);
        }
    }

    /// PSI per column over the last windows, largest first.
    pub fn report(&self) -> Vec<ColumnDrift> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = self.psi_of(&windows);
        report.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        report
    }

    /// Declarations counted in the last windows.
    pub fn sampled(&self) -> u64 {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.current.rows + windows.previous.as_ref().map_or(0, |p| p.rows)
    }

    fn psi_of(&self, windows: &Windows) -> Vec<ColumnDrift> {
        let baseline = self.baseline();
        let mut counts = windows.current.clone();
        if let Some(previous) = &windows.previous {
            counts.add(previous);
        }
        baseline
            .columns
            .iter()
            .zip(baseline.psi(&counts))
            .map(|(column, psi)| ColumnDrift {
                column: column.clone(),
                psi,
            })
            .collect()
    }
}

/// Sets the drift gauges.
fn export(report: &[ColumnDrift]) {
    let mut shifted = 0u32;
    let mut max = 0.0f64;
    for c in report {
        metrics::gauge!("parcel_risk_drift_psi", "column" => c.column.clone()).set(c.psi);
        // Recency measures how stale the frozen history is, not the traffic.
        if !is_history_measure(&c.column) {
            shifted += u32::from(c.psi >= PSI_MAJOR);
            max = max.max(c.psi);
        }
    }
    metrics::gauge!("parcel_risk_drift_max_psi").set(max);
    metrics::gauge!("parcel_risk_drift_columns_shifted").set(f64::from(shifted));
}
