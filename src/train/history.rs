//! The per-epoch record of a run, as CSV and JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::write_atomically;
use crate::error::{Error, Result};

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Counted from 1.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches (in training mode, as the course
    /// computes it).
    pub train_loss: f64,
    /// Fraction of training images classified right during the epoch.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the validation set after the epoch (evaluation mode).
    pub val_loss: f64,
    /// Validation accuracy after the epoch.
    pub val_accuracy: f64,
    /// The learning rate the epoch used.
    pub learning_rate: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Every epoch of a run so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct History {
    /// The learning rate the run started with (step decay scales it).
    pub initial_lr: f64,
    /// The epochs, in order.
    pub epochs: Vec<EpochRecord>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The final model's mean cross-entropy on the test set, once measured.
    #[serde(default)]
    pub test_loss: Option<f64>,
    /// The final model's test accuracy, once measured.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
}

impl History {
    /// An empty history for a run starting at learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        History {
            initial_lr: lr,
            ..History::default()
        }
    }

    /// The epoch with the lowest validation loss (the first of equals).
    pub fn best(&self) -> Option<&EpochRecord> {
        self.epochs
            .iter()
            .fold(None, |best: Option<&EpochRecord>, r| match best {
                Some(b) if b.val_loss <= r.val_loss || r.val_loss.is_nan() => Some(b),
                _ => Some(r),
            })
    }

    /// Epochs run since the best one.
    pub fn epochs_since_best(&self) -> usize {
        match (self.best(), self.epochs.last()) {
            (Some(b), Some(l)) => l.epoch - b.epoch,
            _ => 0,
        }
    }

    /// The history as CSV, one line per epoch.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,seconds,images_per_second\n",
        );
        for r in &self.epochs {
            s += &format!(
                "{},{},{},{},{},{},{:.3},{:.1}\n",
                r.epoch,
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                r.learning_rate,
                r.seconds,
                r.images_per_second
            );
        }
        s
    }

    /// The history as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::param("history", e.to_string()))
    }

    /// A history from [`History::to_json`]'s text.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Read a history JSON file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        History::from_json(&text).map_err(|e| Error::file(path, format!("not a history: {e}")))
    }

    /// Write the CSV and JSON files, each atomically.
    pub fn write(&self, csv: &Path, json: &Path) -> Result<()> {
        write_atomically(csv, self.to_csv().as_bytes())?;
        write_atomically(json, self.to_json()?.as_bytes())
    }
}
