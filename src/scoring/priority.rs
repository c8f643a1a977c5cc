//! From scores to a worklist: the priority value, channels whose cut-offs
//! follow capacity as traffic flows, and deterministic random exploration.
//!
//! Priority = P(any fraud) × (revenue at risk in EUR + the weight of the
//! goods' safety/IPR category). RED takes the top of the priority
//! distribution: a streaming quantile over a decaying window puts the cut-off
//! where the configured share of traffic (or capacity per day divided by the
//! observed volume per day) lies above it. A share of RED capacity
//! (exploration, default 10 %) and a small uniform compliance sample are drawn
//! at random, deterministically from the declaration id and a secret seed:
//! rescoring gives the same picks, traders cannot predict them.

use chrono::{DateTime, Utc};

use crate::domain::{Channel, Hs6, SelectionReason};
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use crate::features::history::{declaration_key, key_hash};

/// A safety or IPR category and the weight (EUR-equivalent) it adds.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryWeight {
    /// HS prefix: chapter, heading or sub-heading digits.
    pub hs_prefix: String,
    pub eur: f64,
}

/// Channel and exploration settings.
///
/// | name | default | purpose |
/// |---|---|---|
/// | `red_per_day` | none | RED capacity per day; when set, the RED share is capacity / observed daily volume |
/// | `red_share` | 0.001 | RED share of traffic when no capacity per day is set |
/// | `yellow_share` | 0.004 | YELLOW (documentary check) share of traffic |
/// | `exploration_share` | 0.10 | share of RED picked at random among the rest |
/// | `compliance_share` | 0.0002 | uniform random compliance sample of all traffic |
/// | `secret_seed` | 0 | keys the random picks; keep it secret |
/// | `category_weights` | toys, electronics, cosmetics, footwear, bags, watches | EUR added to revenue at risk |
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityConfig {
    pub red_per_day: Option<f64>,
    pub red_share: f64,
    pub yellow_share: f64,
    pub exploration_share: f64,
    pub compliance_share: f64,
    pub secret_seed: u64,
    pub category_weights: Vec<CategoryWeight>,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        let w = |p: &str, eur: f64| CategoryWeight {
            hs_prefix: p.to_owned(),
            eur,
        };
        Self {
            red_per_day: None,
            red_share: 0.001,
            yellow_share: 0.004,
            exploration_share: 0.10,
            compliance_share: 0.000_2,
            secret_seed: 0,
            category_weights: vec![
                w("9503", 5.0),
                w("85", 3.0),
                w("3304", 3.0),
                w("6404", 2.0),
                w("4202", 2.0),
                w("9102", 2.0),
            ],
        }
    }
}

/// `code` starts with `prefix`, compared byte by byte: prefixes are a few
/// digits, and a library call per (item, weight) pair cost more than this.
fn has_prefix(code: &str, prefix: &str) -> bool {
    let (code, prefix) = (code.as_bytes(), prefix.as_bytes());
    prefix.len() <= code.len() && prefix.iter().zip(code).all(|(p, c)| p == c)
}

impl PriorityConfig {
    /// The heaviest category weight among the items' HS6 codes.
    pub fn category_weight(&self, codes: impl Iterator<Item = Hs6>) -> f64 {
        codes
            .flat_map(|hs6| {
                self.category_weights
                    .iter()
                    .filter(move |w| has_prefix(hs6.as_str(), &w.hs_prefix))
                    .map(|w| w.eur)
            })
            .fold(0.0, f64::max)
    }

    /// The ranking key.
    pub fn priority(&self, p_fraud: f64, revenue_at_risk_eur: f64, category_eur: f64) -> f64 {
        p_fraud * (revenue_at_risk_eur + category_eur)
    }

    /// A uniform number in [0, 1) fixed by the declaration id and the secret.
    pub fn lottery(&self, declaration_id: &str) -> f64 {
        // The secret in decimal, as text, without an allocation per call.
        let mut digits = [0u8; 20];
        let h = key_hash(&[declaration_id, decimal(self.secret_seed, &mut digits)]);
        // Mix once more: key_hash's last step leaves low bits weaker.
        let h = (h ^ (h >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

/// Log-binned histogram of priorities whose weights decay, so quantiles
/// follow recent traffic. Fixed memory.
#[derive(Debug, Clone)]
struct DecayingQuantiles {
    bins: Vec<f64>,
    total: f64,
    /// Weight of the next observation: grows by 1/decay each time, which is
    /// the same as shrinking every older one, without touching the bins.
    scale: f64,
    growth: f64,
}

const BINS: usize = 2048;
/// Priorities are binned on ln(1e-6 + p) over [-14, 10].
const LOG_MIN: f64 = -14.0;
const LOG_MAX: f64 = 10.0;

impl DecayingQuantiles {
    fn new(half_life: f64) -> Self {
        Self {
            bins: vec![0.0; BINS],
            total: 0.0,
            scale: 1.0,
            growth: 0.5f64.powf(-1.0 / half_life.max(1.0)),
        }
    }

    fn bin(value: f64) -> usize {
        let x = (value.max(0.0) + 1e-6).ln();
        (((x - LOG_MIN) / (LOG_MAX - LOG_MIN) * BINS as f64) as isize).clamp(0, BINS as isize - 1)
            as usize
    }

    /// The priority at a fractional bin position (in log space).
    fn value_at(position: f64) -> f64 {
        (LOG_MIN + position / BINS as f64 * (LOG_MAX - LOG_MIN)).exp() - 1e-6
    }

    fn observe(&mut self, value: f64) {
        self.scale *= self.growth;
        self.bins[Self::bin(value)] += self.scale;
        self.total += self.scale;
        if self.scale > 1e100 {
            for b in &mut self.bins {
                *b /= self.scale;
            }
            self.total /= self.scale;
            self.scale = 1.0;
        }
    }

    /// The value above which `share` of the (weighted) observations lie.
    fn upper_cut(&self, share: f64) -> f64 {
        let mut above = 0.0;
        let target = share * self.total;
        for bin in (0..BINS).rev() {
            let weight = self.bins[bin];
            if above + weight > target {
                // Interpolate inside the bin: take the part of it we need.
                let needed = (target - above) / weight;
                return Self::value_at(bin as f64 + 1.0 - needed);
            }
            above += weight;
        }
        0.0
    }
}

/// Assigns channels as declarations flow, keeping the RED share on the
/// capacity target. Not shared; the service wraps it in a lock.
#[derive(Debug, Clone)]
pub struct ChannelAllocator {
    config: PriorityConfig,
    quantiles: DecayingQuantiles,
    /// Moving average of the seconds between declarations (in lodging
    /// order), for the daily volume; it follows volume changes within about
    /// `VOLUME_MEMORY` declarations.
    mean_gap_seconds: Option<f64>,
    last_seen: Option<DateTime<Utc>>,
    observed: u64,
    /// RED and YELLOW cut-offs, refreshed every `CUT_REFRESH` declarations:
    /// they move slowly, and reading them off the histogram costs a scan.
    cuts: (f64, f64),
    /// The latest decisions by declaration id: a resent declaration gets
    /// its decision again without counting as more traffic or taking more
    /// capacity (clients resend after any transport error).
    /// Keyed by [`declaration_key`] (64 bits: no string kept per declaration).
    decided: HashMap<u64, Decision>,
    /// Keys in `decided`, oldest first.
    decided_order: VecDeque<u64>,
}

/// Decisions remembered for resends.
const REMEMBERED_DECISIONS: usize = 1 << 16;

/// Declarations over which the channel cut-offs follow traffic (half-life),
/// in the service and in batch rescoring alike.
pub const CHANNEL_HALF_LIFE: f64 = 100_000.0;

const CUT_REFRESH: u64 = 64;
const VOLUME_MEMORY: f64 = 5_000.0;

/// Observations before the cut-offs are trusted; until then only the random
/// picks and the very top go RED.
const WARM_UP: u64 = 200;

/// Where a declaration goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub channel: Channel,
    pub selection_reason: SelectionReason,
}

impl ChannelAllocator {
    /// `half_life` is in declarations: how fast old traffic stops counting.
    pub fn new(config: PriorityConfig, half_life: f64) -> Self {
        Self {
            config,
            quantiles: DecayingQuantiles::new(half_life),
            mean_gap_seconds: None,
            last_seen: None,
            observed: 0,
            cuts: (f64::INFINITY, f64::INFINITY),
            decided: HashMap::default(),
            decided_order: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &PriorityConfig {
        &self.config
    }

    /// The RED share in force: capacity per day over the observed volume per
    /// day when a capacity is set, else the configured share.
    pub fn red_share(&self) -> f64 {
        match (self.config.red_per_day, self.mean_gap_seconds) {
            (Some(capacity), Some(gap)) if gap > 0.0 => {
                let per_day = 86_400.0 / gap;
                (capacity / per_day).clamp(0.0, 1.0)
            }
            (Some(_), _) | (None, _) => self.config.red_share,
        }
    }

    /// Observes a declaration's priority and decides its channel.
    pub fn decide(
        &mut self,
        declaration_id: &str,
        lodged_at: DateTime<Utc>,
        priority: f64,
    ) -> Decision {
        let key = declaration_key(declaration_id);
        if let Some(decision) = self.decided.get(&key) {
            return *decision;
        }
        let decision = self.decide_new(declaration_id, lodged_at, priority);
        if key != 0 {
            if self.decided_order.len() == REMEMBERED_DECISIONS
                && let Some(oldest) = self.decided_order.pop_front()
            {
                self.decided.remove(&oldest);
            }
            self.decided.insert(key, decision);
            self.decided_order.push_back(key);
        }
        decision
    }

    fn decide_new(
        &mut self,
        declaration_id: &str,
        lodged_at: DateTime<Utc>,
        priority: f64,
    ) -> Decision {
        self.observed += 1;
        if let Some(last) = self.last_seen {
            // Out-of-order lodging times count as simultaneous.
            let gap = (lodged_at - last).num_milliseconds().max(0) as f64 / 1000.0;
            let mean = self.mean_gap_seconds.get_or_insert(gap);
            *mean += (gap - *mean) / VOLUME_MEMORY.min(self.observed as f64);
        }
        self.last_seen = Some(self.last_seen.map_or(lodged_at, |l| l.max(lodged_at)));
        self.quantiles.observe(priority);
        let red = self.red_share();
        let by_risk = red * (1.0 - self.config.exploration_share);
        let lottery = self.config.lottery(declaration_id);
        if lottery < self.config.compliance_share {
            return Decision {
                channel: Channel::Red,
                selection_reason: SelectionReason::Random,
            };
        }
        let warm = self.observed >= WARM_UP;
        if self.observed % CUT_REFRESH == 0 || self.observed == WARM_UP {
            self.cuts = (
                self.quantiles.upper_cut(by_risk),
                self.quantiles.upper_cut(by_risk + self.config.yellow_share),
            );
        }
        let (red_cut, yellow_cut) = self.cuts;
        if warm && priority > red_cut {
            return Decision {
                channel: Channel::Red,
                selection_reason: SelectionReason::RiskScore,
            };
        }
        // Exploration: the rest of RED capacity, at random among the others.
        let explore = red * self.config.exploration_share;
        if (self.config.compliance_share..self.config.compliance_share + explore).contains(&lottery)
        {
            return Decision {
                channel: Channel::Red,
                selection_reason: SelectionReason::Random,
            };
        }
        if warm && priority > yellow_cut {
            return Decision {
                channel: Channel::Yellow,
                selection_reason: SelectionReason::RiskScore,
            };
        }
        Decision {
            channel: Channel::Green,
            selection_reason: SelectionReason::NotSelected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_resent_declaration_gets_its_decision_again_and_takes_nothing() {
        let mut a = ChannelAllocator::new(PriorityConfig::default(), CHANNEL_HALF_LIFE);
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
        for i in 0..500 {
            a.decide(
                &format!("D{i}"),
                t0 + Duration::seconds(i),
                f64::from(i as u32),
            );
        }
        let first = a.decide("R", t0 + Duration::seconds(600), 1e9);
        let (observed, gap) = (a.observed, a.mean_gap_seconds);
        for _ in 0..50 {
            assert_eq!(a.decide("R", t0 + Duration::seconds(600), 1e9), first);
        }
        assert_eq!((a.observed, a.mean_gap_seconds), (observed, gap));
        // Declarations without an id are each new.
        a.decide("", t0 + Duration::seconds(601), 1.0);
        a.decide("", t0 + Duration::seconds(602), 1.0);
        assert_eq!(a.observed, observed + 2);
    }

    fn run(allocator: &mut ChannelAllocator, per_day: u64, days: u64, seed: u64) -> (u64, u64) {
        run_from(allocator, per_day, days, seed, 0)
    }

    fn run_from(
        allocator: &mut ChannelAllocator,
        per_day: u64,
        days: u64,
        seed: u64,
        start_day: i64,
    ) -> (u64, u64) {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap() + Duration::days(start_day);
        let (mut red, mut total) = (0, 0);
        for i in 0..per_day * days {
            let at = t0 + Duration::milliseconds((i * 86_400_000 / per_day) as i64);
            // Heavy-tailed priorities, like risk × revenue.
            let priority = rng.r#gen::<f64>().powi(8) * 20.0;
            let d = allocator.decide(&format!("{seed}-{i}"), at, priority);
            if i >= per_day {
                total += 1;
                red += u64::from(d.channel == Channel::Red);
            }
        }
        (red, total)
    }

    #[test]
    fn decimal_writes_the_same_text_as_to_string() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn red_count_tracks_capacity_when_volume_doubles() {
        let config = PriorityConfig {
            red_per_day: Some(50.0),
            ..PriorityConfig::default()
        };
        for per_day in [20_000u64, 40_000] {
            let mut a = ChannelAllocator::new(config.clone(), 20_000.0);
            let (red, total) = run(&mut a, per_day, 3, 1);
            let red_per_day = red as f64 / (total as f64 / per_day as f64);
            // Within 20 % of capacity (plus the compliance sample).
            let expected = 50.0 + config.compliance_share * per_day as f64;
            assert!(
                (red_per_day - expected).abs() < 0.2 * expected,
                "{per_day}/day: {red_per_day} RED/day, expected {expected}"
            );
        }
    }

    #[test]
    fn red_count_follows_a_volume_change_within_one_stream() {
        let config = PriorityConfig {
            red_per_day: Some(50.0),
            ..PriorityConfig::default()
        };
        let mut a = ChannelAllocator::new(config.clone(), 20_000.0);
        run_from(&mut a, 20_000, 2, 3, 0);
        // Now twice the traffic: the RED count per day stays near capacity.
        let (red, total) = run_from(&mut a, 40_000, 2, 4, 2);
        let red_per_day = red as f64 / (total as f64 / 40_000.0);
        let expected = 50.0 + config.compliance_share * 40_000.0;
        assert!(
            (red_per_day - expected).abs() < 0.25 * expected,
            "{red_per_day} RED/day, expected {expected}"
        );
    }

    #[test]
    fn shares_follow_the_configuration() {
        let config = PriorityConfig {
            red_share: 0.01,
            yellow_share: 0.03,
            ..PriorityConfig::default()
        };
        let mut a = ChannelAllocator::new(config, 50_000.0);
        let (red, total) = run(&mut a, 50_000, 2, 2);
        let share = red as f64 / total as f64;
        assert!((0.008..0.0125).contains(&share), "{share}");
    }

    #[test]
    fn random_picks_are_stable_and_near_their_share() {
        let config = PriorityConfig {
            secret_seed: 42,
            ..PriorityConfig::default()
        };
        let picks = |c: &PriorityConfig| {
            (0..200_000)
                .filter(|i| c.lottery(&format!("D{i}")) < 0.01)
                .count()
        };
        let first = picks(&config);
        assert_eq!(first, picks(&config), "same ids, same seed, same picks");
        assert!((1_800..2_200).contains(&first), "{first}");
        let other = PriorityConfig {
            secret_seed: 43,
            ..PriorityConfig::default()
        };
        let a: Vec<bool> = (0..1000)
            .map(|i| config.lottery(&format!("D{i}")) < 0.1)
            .collect();
        let b: Vec<bool> = (0..1000)
            .map(|i| other.lottery(&format!("D{i}")) < 0.1)
            .collect();
        assert_ne!(a, b, "another secret, other picks");
    }

    #[test]
    fn category_weights_take_the_heaviest_match() {
        let c = PriorityConfig::default();
        let toys = Hs6::parse("950300").unwrap();
        let phone = Hs6::parse("851713").unwrap();
        let shirt = Hs6::parse("610910").unwrap();
        assert_eq!(c.category_weight([toys, phone].into_iter()), 5.0);
        assert_eq!(c.category_weight([shirt].into_iter()), 0.0);
        assert_eq!(c.priority(0.5, 10.0, 5.0), 7.5);
    }
}
