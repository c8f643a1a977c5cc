//! `PlanInspections`: one batch (a flight's manifest) and a capacity in, a
//! ranked worklist out. The top of the priority ranking fills capacity, less
//! an exploration share drawn at random (by the secret lottery) among the
//! rest; the next `capacity` by priority go YELLOW, the others GREEN.

use crate::domain::{Channel, SelectionReason};
use crate::features::history::key_hash;

use super::Assessment;
use super::priority::{Decision, PriorityConfig};

/// Routes every assessment and returns their indices in worklist order:
/// the selected by rank, then the rest by priority.
pub fn plan(
    assessments: &mut [Assessment],
    capacity: usize,
    config: &PriorityConfig,
) -> Vec<usize> {
    let n = assessments.len();
    let capacity = capacity.min(n);
    let random_picks = ((capacity as f64) * config.exploration_share).round() as usize;
    let risk_picks = capacity - random_picks;
    let tie = |a: &Assessment| key_hash(&[&a.declaration_id]);
    let mut by_priority: Vec<usize> = (0..n).collect();
    by_priority.sort_by(|&a, &b| {
        assessments[b]
            .priority_value
            .total_cmp(&assessments[a].priority_value)
            .then_with(|| tie(&assessments[a]).cmp(&tie(&assessments[b])))
    });
    let mut order: Vec<usize> = by_priority[..risk_picks].to_vec();
    let mut rest: Vec<usize> = by_priority[risk_picks..].to_vec();
    // Exploration: the lowest lottery numbers among the rest.
    let mut lottery: Vec<(f64, usize)> = rest
        .iter()
        .map(|&i| (config.lottery(&assessments[i].declaration_id), i))
        .collect();
    lottery.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let random: Vec<usize> = lottery.iter().take(random_picks).map(|(_, i)| *i).collect();
    rest.retain(|i| !random.contains(i));
    order.extend(&random);
    for (rank, &i) in order.iter().enumerate() {
        let selection_reason = if rank < risk_picks {
            SelectionReason::RiskScore
        } else {
            SelectionReason::Random
        };
        assessments[i].route(
            Decision {
                channel: Channel::Red,
                selection_reason,
            },
            rank as u32 + 1,
        );
    }
    for (position, &i) in rest.iter().enumerate() {
        let decision = if position < capacity {
            Decision {
                channel: Channel::Yellow,
                selection_reason: SelectionReason::RiskScore,
            }
        } else {
            Decision {
                channel: Channel::Green,
                selection_reason: SelectionReason::NotSelected,
            }
        };
        assessments[i].route(decision, 0);
    }
    order.extend(rest);
    order
}
