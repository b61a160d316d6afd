//! What `electra finetune` reports and writes to `OUT/results.json`: each seed's scores,
//! the medians, the recipe, and the results as a text table.

use std::fmt;
use std::path::PathBuf;

use electra_model::ProblemType;
use electra_pipeline::report::Rows;
use serde::Serialize;

use crate::scores::Scores;

/// One seed's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Dev scores after training.
    pub dev: Scores,
    /// Test scores, when the task has `test.tsv`.
    pub test: Option<Scores>,
    /// Mean training loss over the last epoch.
    pub train_loss: f64,
    /// Updates made.
    pub steps: u64,
    /// Wall time of training and evaluation.
    pub seconds: f64,
}

/// The medians over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct MedianResult {
    /// Median dev scores.
    pub dev: Scores,
    /// Median test scores.
    pub test: Option<Scores>,
}

/// The settings a report was made with.
#[derive(Debug, Clone, Serialize)]
pub struct Hyperparameters {
    pub epochs: u32,
    pub learning_rate: f64,
    pub layer_decay: f64,
    pub max_seq_len: usize,
    pub batch_size: usize,
    pub weight_decay: f64,
    pub warmup_fraction: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub clip_norm: f64,
}

/// What `electra finetune` reports and writes to `OUT/results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// The task folder.
    pub task: PathBuf,
    /// The discriminator folder used.
    pub model: PathBuf,
    /// `single_label_classification` or `regression`.
    pub problem_type: ProblemType,
    /// Class names by id (one name for regression).
    pub labels: Vec<String>,
    /// Whether the examples are sentence pairs.
    pub pairs: bool,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples scored.
    pub dev_examples: usize,
    /// Test examples scored (absent without `test.tsv`).
    pub test_examples: Option<usize>,
    /// Examples cut to `max_seq_len`, over all splits.
    pub truncated_examples: usize,
    /// The device, in words.
    pub device: String,
    /// The recipe.
    pub hyperparameters: Hyperparameters,
    /// Per seed, in the order run.
    pub seeds: Vec<SeedResult>,
    /// Medians over the seeds.
    pub median: MedianResult,
    /// The seed whose model was saved.
    pub saved_seed: Option<u64>,
    /// Where it was saved.
    pub saved_model: Option<PathBuf>,
    /// Wall time of the whole command.
    pub seconds: f64,
    /// Where this report was written (not in `results.json`: it is that file).
    #[serde(skip)]
    pub results_file: PathBuf,
}

/// A column of the results table: its name and how to read it from [`Scores`].
type MetricColumn = (&'static str, fn(&Scores) -> Option<f64>);

impl FinetuneReport {
    fn metric_columns(&self) -> Vec<MetricColumn> {
        match self.problem_type {
            ProblemType::Regression => vec![
                ("pearson", |s: &Scores| s.pearson),
                ("spearman", |s: &Scores| s.spearman),
            ],
            _ => {
                let mut columns: Vec<MetricColumn> = vec![
                    ("acc", |s: &Scores| s.accuracy),
                    ("macro-F1", |s: &Scores| s.macro_f1),
                ];
                if self.labels.len() == 2 {
                    columns.push(("MCC", |s: &Scores| s.mcc));
                }
                columns
            }
        }
    }

    /// The results as a text table: one row per seed, then the median.
    pub fn table(&self) -> String {
        let columns = self.metric_columns();
        let splits: Vec<&str> = if self.test_examples.is_some() {
            vec!["dev", "test"]
        } else {
            vec!["dev"]
        };
        let mut out = String::new();
        let mut header = format!("  {:>8}", "seed");
        for split in &splits {
            for (name, _) in &columns {
                header.push_str(&format!(" {:>14}", format!("{split} {name}")));
            }
        }
        header.push_str(&format!(" {:>11} {:>9}", "train loss", "seconds"));
        out.push_str(&header);
        out.push('\n');
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let row = |label: String, dev: &Scores, test: Option<&Scores>, tail: String| {
            let mut line = format!("  {label:>8}");
            for scores in [Some(dev), test].into_iter().take(splits.len()) {
                for (_, get) in &columns {
                    line.push_str(&format!(" {:>14}", cell(scores.and_then(get))));
                }
            }
            line.push_str(&tail);
            line
        };
        for s in &self.seeds {
            out.push_str(&row(
                s.seed.to_string(),
                &s.dev,
                s.test.as_ref(),
                format!(" {:>11.4} {:>9.1}", s.train_loss, s.seconds),
            ));
            out.push('\n');
        }
        if self.seeds.len() > 1 {
            out.push_str(&row(
                "median".into(),
                &self.median.dev,
                self.median.test.as_ref(),
                String::new(),
            ));
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for FinetuneReport {
    /// The task in one line, the results table, then where the results and the model went.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "  {} ({}, {} labels{}): {} train, {} dev{} examples, {} steps per seed on {}",
            self.task.display(),
            self.problem_type.as_str(),
            self.labels.len(),
            if self.pairs { ", pairs" } else { "" },
            self.train_examples,
            self.dev_examples,
            self.test_examples
                .map_or(String::new(), |n| format!(", {n} test")),
            self.hyperparameters.total_steps,
            self.device,
        )?;
        write!(f, "{}", self.table())?;
        let mut rows = Rows::new(f, 22);
        rows.row("results", self.results_file.display())?;
        if let (Some(seed), Some(dir)) = (self.saved_seed, &self.saved_model) {
            rows.row("model", format!("{} (seed {seed})", dir.display()))?;
        }
        rows.row("seconds", format!("{:.1}", self.seconds))
    }
}
