//! Ranking metrics: what share of fraud and of fraud revenue the top of a
//! ranked list catches. Ties break deterministically by a per-record key, so
//! the same scores always give the same figures.

/// Indices sorted by score, highest first; ties by `tie_key`, ascending.
pub fn ranking(scores: &[f64], tie_key: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(tie_key[a].cmp(&tie_key[b]))
    });
    order
}

/// How many records the top `share` of `n` holds (at least one).
pub fn top_count(n: usize, share: f64) -> usize {
    ((n as f64 * share).ceil() as usize).clamp(1.min(n), n)
}

/// Share of the top `share` of the ranking that is positive.
pub fn precision_at(order: &[usize], positive: &[bool], share: f64) -> f64 {
    let k = top_count(order.len(), share);
    if k == 0 {
        return 0.0;
    }
    order[..k].iter().filter(|&&i| positive[i]).count() as f64 / k as f64
}

/// Share of all positives found in the top `share` of the ranking.
pub fn recall_at(order: &[usize], positive: &[bool], share: f64) -> f64 {
    let total = positive.iter().filter(|p| **p).count();
    if total == 0 {
        return 0.0;
    }
    let k = top_count(order.len(), share);
    order[..k].iter().filter(|&&i| positive[i]).count() as f64 / total as f64
}

/// Share of the total `revenue` caught in the top `share` of the ranking.
pub fn revenue_at(order: &[usize], revenue: &[f64], share: f64) -> f64 {
    let total: f64 = revenue.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let k = top_count(order.len(), share);
    order[..k].iter().map(|&i| revenue[i]).sum::<f64>() / total
}

/// Area under the ROC curve (Mann-Whitney, ties counted half).
pub fn auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos, mut i) = (0.0, 0usize, 0usize);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Average rank of the tie group (1-based).
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if positive[k] {
                rank_sum += avg;
                pos += 1;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() - pos;
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64)
}

/// Average precision over the ranking.
pub fn average_precision(order: &[usize], positive: &[bool]) -> f64 {
    let total = positive.iter().filter(|p| **p).count();
    if total == 0 {
        return 0.0;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (rank, &i) in order.iter().enumerate() {
        if positive[i] {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    sum / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_rankings() {
        let scores = [0.9, 0.8, 0.2, 0.1];
        let positive = [true, true, false, false];
        let keys = [0, 1, 2, 3];
        let order = ranking(&scores, &keys);
        assert_eq!(auc(&scores, &positive), 1.0);
        assert_eq!(precision_at(&order, &positive, 0.5), 1.0);
        assert_eq!(recall_at(&order, &positive, 0.25), 0.5);
        assert_eq!(average_precision(&order, &positive), 1.0);
        let reversed = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(auc(&reversed, &positive), 0.0);
        assert_eq!(
            revenue_at(&ranking(&reversed, &keys), &[10.0, 30.0, 0.0, 0.0], 0.75),
            0.75
        );
    }

    #[test]
    fn ties_are_broken_by_key_and_count_half_in_auc() {
        let scores = [0.5, 0.5, 0.5];
        assert_eq!(ranking(&scores, &[3, 1, 2]), vec![1, 2, 0]);
        assert_eq!(auc(&scores, &[true, false, false]), 0.5);
        assert_eq!(top_count(1000, 0.01), 10);
        assert_eq!(top_count(5, 0.01), 1);
        assert_eq!(top_count(0, 0.01), 0);
    }
}
