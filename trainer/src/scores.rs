//! Evaluation scores of a fine-tuned model, as GLUE reports them: accuracy, macro-F1 and
//! (two classes) Matthews correlation for classification; Pearson and Spearman
//! correlation for regression. Undefined values (no examples, zero variance) are `None`,
//! never NaN. [`median`] summarises several seeds.

use serde::Serialize;

/// The scores of one evaluation; fields that do not apply are `None` and left out of JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    /// Examples evaluated.
    pub examples: usize,
    /// Fraction of exact predictions (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Unweighted mean of the per-class F1 over the classes seen in the gold labels or the
    /// predictions (scikit-learn's `f1_score(average="macro")`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// Matthews correlation coefficient (two classes; 0 when undefined, as scikit-learn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcc: Option<f64>,
    /// Pearson correlation (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pearson: Option<f64>,
    /// Spearman rank correlation, ties at their mean rank (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spearman: Option<f64>,
    /// Mean loss over the examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

impl Scores {
    /// Accuracy, macro-F1 and, when `num_classes == 2`, MCC of predicted class ids against
    /// gold ones (both `< num_classes`).
    pub fn classification(gold: &[usize], predicted: &[usize], num_classes: usize) -> Self {
        Scores {
            examples: gold.len(),
            accuracy: accuracy(gold, predicted),
            macro_f1: macro_f1(gold, predicted, num_classes),
            mcc: (num_classes == 2)
                .then(|| binary_mcc(gold, predicted))
                .flatten(),
            ..Scores::default()
        }
    }

    /// Pearson and Spearman correlation of predictions with gold values.
    pub fn regression(gold: &[f64], predicted: &[f64]) -> Self {
        Scores {
            examples: gold.len(),
            pearson: pearson(gold, predicted),
            spearman: spearman(gold, predicted),
            ..Scores::default()
        }
    }

    /// The headline score used to pick the best seed: accuracy, else Pearson.
    pub fn primary(&self) -> Option<f64> {
        self.accuracy.or(self.pearson)
    }
}

/// Fraction of equal pairs; `None` for no examples.
pub fn accuracy(gold: &[usize], predicted: &[usize]) -> Option<f64> {
    if gold.is_empty() {
        return None;
    }
    let correct = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    Some(correct as f64 / gold.len() as f64)
}

/// Macro-averaged F1 over the classes that occur in `gold` or `predicted`; per class
/// `2 tp / (2 tp + fp + fn)`. `None` for no examples.
pub fn macro_f1(gold: &[usize], predicted: &[usize], num_classes: usize) -> Option<f64> {
    if gold.is_empty() {
        return None;
    }
    let classes = gold
        .iter()
        .chain(predicted)
        .copied()
        .max()
        .map_or(num_classes, |m| num_classes.max(m + 1));
    let (mut tp, mut fp, mut fn_) = (
        vec![0u64; classes],
        vec![0u64; classes],
        vec![0u64; classes],
    );
    for (&g, &p) in gold.iter().zip(predicted) {
        if g == p {
            tp[g] += 1;
        } else {
            fp[p] += 1;
            fn_[g] += 1;
        }
    }
    let f1s: Vec<f64> = (0..classes)
        .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
        .map(|c| 2.0 * tp[c] as f64 / (2 * tp[c] + fp[c] + fn_[c]) as f64)
        .collect();
    Some(f1s.iter().sum::<f64>() / f1s.len().max(1) as f64)
}

/// Matthews correlation for classes 0/1 (1 is "positive"):
/// `(tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))`, 0 when a factor is 0
/// (scikit-learn's convention). `None` for no examples.
pub fn binary_mcc(gold: &[usize], predicted: &[usize]) -> Option<f64> {
    if gold.is_empty() {
        return None;
    }
    let (mut tp, mut tn, mut fp, mut fn_) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &p) in gold.iter().zip(predicted) {
        match (g == 1, p == 1) {
            (true, true) => tp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fn_ += 1.0,
        }
    }
    let denominator = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    Some(if denominator == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fn_) / denominator
    })
}

/// Pearson correlation; `None` with fewer than two values or zero variance on a side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x[..n].iter().zip(&y[..n]) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// 1-based ranks with ties at their mean rank (`[10, 20, 20, 30]` -> `[1, 2.5, 2.5, 4]`).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) share ranks start+1..=end: their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman correlation: Pearson of the [`ranks`].
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// The median of the defined values (mean of the middle two for an even count); `None`
/// when there are none.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Field-wise [`median`] of several seeds' scores (`examples` from the first).
pub fn median_scores(all: &[&Scores]) -> Scores {
    let field = |get: fn(&Scores) -> Option<f64>| median(all.iter().map(|s| get(s)));
    Scores {
        examples: all.first().map_or(0, |s| s.examples),
        accuracy: field(|s| s.accuracy),
        macro_f1: field(|s| s.macro_f1),
        mcc: field(|s| s.mcc),
        pearson: field(|s| s.pearson),
        spearman: field(|s| s.spearman),
        loss: field(|s| s.loss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.unwrap();
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn accuracy_and_macro_f1_match_hand_computed_values() {
        // gold 0 0 1 1 2 2, predicted 0 1 1 1 2 0.
        let gold = [0, 0, 1, 1, 2, 2];
        let pred = [0, 1, 1, 1, 2, 0];
        close(accuracy(&gold, &pred), 4.0 / 6.0);
        // class 0: tp 1 fp 1 fn 1 -> 2/4; class 1: tp 2 fp 1 fn 0 -> 4/5;
        // class 2: tp 1 fp 0 fn 1 -> 2/3.
        close(macro_f1(&gold, &pred, 3), (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
        // A class in neither gold nor predictions does not count (scikit-learn).
        close(macro_f1(&gold, &pred, 5), (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
        // A predicted class absent from gold counts with F1 0.
        close(macro_f1(&[0, 0], &[0, 1], 2), (2.0 / 3.0 + 0.0) / 2.0);
        assert_eq!(accuracy(&[], &[]), None);
    }

    #[test]
    fn mcc_matches_the_formula_and_is_zero_when_undefined() {
        // tp 2 (idx 0,1), fn 1 (2), fp 1 (3), tn 2 (4,5).
        let gold = [1, 1, 1, 0, 0, 0];
        let pred = [1, 1, 0, 1, 0, 0];
        close(
            binary_mcc(&gold, &pred),
            (2.0 * 2.0 - 1.0 * 1.0) / (3.0f64 * 3.0 * 3.0 * 3.0).sqrt(),
        );
        close(binary_mcc(&gold, &gold), 1.0);
        close(binary_mcc(&[1, 0], &[0, 1]), -1.0);
        // Always predicting one class: a zero factor, MCC 0.
        close(binary_mcc(&gold, &[0; 6]), 0.0);
        let s = Scores::classification(&gold, &pred, 2);
        assert!(s.mcc.is_some());
        assert_eq!(Scores::classification(&gold, &pred, 3).mcc, None);
    }

    #[test]
    fn pearson_matches_a_hand_computed_value() {
        // x 1 2 3 4, y 2 4 5 9: means 2.5, 5; dx -1.5 -.5 .5 1.5; dy -3 -1 0 4.
        // sxy = 4.5 + .5 + 0 + 6 = 11; sxx = 5; syy = 9 + 1 + 0 + 16 = 26.
        close(
            pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]),
            11.0 / (5.0f64 * 26.0).sqrt(),
        );
        close(pearson(&[1.0, 2.0, 3.0], &[-2.0, -4.0, -6.0]), -1.0);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
    }

    #[test]
    fn spearman_gives_ties_their_mean_rank() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), [1.0, 4.0, 2.5, 2.5]);
        assert_eq!(ranks(&[5.0, 5.0, 5.0]), [2.0, 2.0, 2.0]);
        // Monotone but not linear: Spearman 1, Pearson below 1.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 4.0, 9.0, 16.0, 100.0];
        close(spearman(&x, &y), 1.0);
        assert!(pearson(&x, &y).unwrap() < 0.99);
        // With ties: x ranks 1 2 3 4, y = [1, 2, 2, 3] ranks 1 2.5 2.5 4.
        // dx -1.5 -.5 .5 1.5, dy -1.5 0 0 1.5: sxy 4.5, sxx 5, syy 4.5 -> 4.5 / sqrt(22.5).
        close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 2.0, 3.0]),
            4.5 / 22.5f64.sqrt(),
        );
    }

    #[test]
    fn medians_skip_undefined_values() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(3.0), None, Some(1.0)]), Some(2.0));
        assert_eq!(median([None]), None);
        let a = Scores::regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        let b = Scores::regression(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]);
        let c = Scores::regression(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]);
        let m = median_scores(&[&a, &b, &c]);
        assert_eq!(m.spearman, c.spearman);
        assert_eq!(m.accuracy, None);
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("accuracy").is_none() && json.get("spearman").is_some());
    }
}
