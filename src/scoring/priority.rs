//! From scores to a worklist: the priority value, channels whose cut-offs
//! hold RED per calendar day at capacity as traffic flows, and deterministic
//! random exploration.
//!
//! Priority = the expected loss of releasing a declaration: P(undervaluation)
//! × the undervaluation stake learnt from found values + P(any fraud) × (the
//! tax gap on reference values + the weight of the goods' safety/IPR
//! category). RED takes the top of the priority distribution: a streaming
//! quantile over a decaying window puts the cut-off where what is left of
//! today's RED target (capacity, or a share of the day's traffic) over the
//! traffic expected in the rest of the day lies above it. A share of RED
//! capacity (exploration, default 10 %) and a small uniform compliance sample
//! are drawn at random inside it, deterministically from the declaration id
//! and a secret seed: rescoring gives the same picks, traders cannot predict
//! them.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::{Channel, Hs6, SelectionReason};

use crate::features::history::{declaration_key, key_hash};
use crate::features::recent::RecentKeys;

/// A safety or IPR category and the weight (EUR-equivalent) it adds.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryWeight {
    /// HS prefix: chapter, heading or sub-heading digits.
    pub hs_prefix: String,
    pub eur: f64,
}

impl std::str::FromStr for CategoryWeight {
    type Err = ParamsError;

    /// Parses `9503=5`: an HS prefix of 2 to 6 digits and a non-negative EUR weight.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, eur) = s.split_once('=').ok_or_else(|| {
            ParamsError::CategoryWeight(format!("{s:?} is not HS-PREFIX=EUR (e.g. 9503=5)"))
        })?;
        let eur: f64 = eur
            .trim()
            .parse()
            .map_err(|_| ParamsError::CategoryWeight(format!("{eur:?} is not a number of EUR")))?;
        let weight = CategoryWeight {
            hs_prefix: prefix.trim().to_owned(),
            eur,
        };
        weight.check()?;
        Ok(weight)
    }
}

impl CategoryWeight {
    fn check(&self) -> Result<(), ParamsError> {
        let prefix = &self.hs_prefix;
        if !(2..=6).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParamsError::CategoryWeight(format!(
                "{prefix:?} is not an HS prefix of 2 to 6 digits"
            )));
        }
        if !self.eur.is_finite() || self.eur < 0.0 {
            return Err(ParamsError::CategoryWeight(format!(
                "weight {} of {prefix} must be a non-negative number of EUR",
                self.eur
            )));
        }
        Ok(())
    }
}

/// What the priority weighs: the model's probabilities and what is at stake.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stakes {
    pub p_any: f64,
    pub p_undervaluation: f64,
    /// Taxes on the expected (reference) values and predicted sub-headings
    /// minus taxes as declared, EUR.
    pub revenue_gap_eur: f64,
    /// What an undervalued declaration of this value is expected to have
    /// evaded ([`crate::model::stake::ValueStake`]), EUR.
    pub undervaluation_eur: f64,
}

/// Channel settings that make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    #[error("{name} must be within 0..=1, got {value}")]
    Share { name: &'static str, value: f64 },
    #[error("red per day must be a positive number of declarations, got {0}")]
    RedPerDay(f64),
    #[error("red share {red} plus yellow share {yellow} exceeds all traffic")]
    SharesOverOne { red: f64, yellow: f64 },
    #[error(
        "compliance share {compliance} exceeds the red share {red}: the sample is part of RED capacity"
    )]
    ComplianceOverRed { compliance: f64, red: f64 },
    #[error("category weight: {0}")]
    CategoryWeight(String),
    #[error("detection value {0} must be a non-negative number of EUR")]
    DetectionValue(f64),
    #[error("{0:?} is not a time zone of the IANA database (e.g. Europe/Brussels, UTC)")]
    TimeZone(String),
}

/// Default RED share of traffic when no capacity per day is set.
pub const DEFAULT_RED_SHARE: f64 = 0.001;
/// Default YELLOW (documentary check) share of traffic.
pub const DEFAULT_YELLOW_SHARE: f64 = 0.004;
/// Default share of RED drawn at random among the rest.
pub const DEFAULT_EXPLORATION_SHARE: f64 = 0.10;
/// Default uniform compliance sample of all traffic.
pub const DEFAULT_COMPLIANCE_SHARE: f64 = 0.000_2;
/// Default value of a detection beyond the duties it recovers, EUR.
pub const DEFAULT_DETECTION_VALUE_EUR: f64 = 0.0;
/// Default time zone of the calendar day that capacity is counted in.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// Channel and exploration settings as given, unchecked; [`PriorityParams::check`]
/// makes a [`PriorityConfig`] of them (linfa's params → checked params).
///
/// | name | default | purpose |
/// |---|---|---|
/// | `red_per_day` | none | RED capacity per calendar day; when set, RED per day holds at it whatever the volume |
/// | `red_share` | 0.001 | RED share of each day's traffic when no capacity per day is set |
/// | `yellow_share` | 0.004 | YELLOW (documentary check) share of traffic |
/// | `exploration_share` | 0.10 | share of RED picked at random among the rest |
/// | `compliance_share` | 0.0002 | uniform random compliance sample of all traffic, inside RED capacity |
/// | `secret_seed` | 0 | keys the random picks; keep it secret |
/// | `category_weights` | toys, electronics, cosmetics, footwear, bags, watches | EUR added to revenue at risk |
/// | `detection_value_eur` | 0 | EUR a detected infringement is worth beyond its duties (the penalty, the deterrence), added for every fraud kind |
/// | `time_zone` | UTC | the calendar day capacity is counted in (lodging time) |
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityParams {
    pub red_per_day: Option<f64>,
    pub red_share: f64,
    pub yellow_share: f64,
    pub exploration_share: f64,
    pub compliance_share: f64,
    pub secret_seed: u64,
    pub category_weights: Vec<CategoryWeight>,
    pub detection_value_eur: f64,
    pub time_zone: Tz,
}

impl Default for PriorityParams {
    fn default() -> Self {
        let w = |p: &str, eur: f64| CategoryWeight {
            hs_prefix: p.to_owned(),
            eur,
        };
        Self {
            red_per_day: None,
            red_share: DEFAULT_RED_SHARE,
            yellow_share: DEFAULT_YELLOW_SHARE,
            exploration_share: DEFAULT_EXPLORATION_SHARE,
            compliance_share: DEFAULT_COMPLIANCE_SHARE,
            secret_seed: 0,
            category_weights: vec![
                w("9503", 5.0),
                w("85", 3.0),
                w("3304", 3.0),
                w("6404", 2.0),
                w("4202", 2.0),
                w("9102", 2.0),
            ],
            detection_value_eur: DEFAULT_DETECTION_VALUE_EUR,
            time_zone: Tz::UTC,
        }
    }
}

impl PriorityParams {
    /// Refuses settings that make no sense: a share outside 0..=1, RED and
    /// YELLOW over all traffic, a capacity that is not a positive number, a
    /// bad category weight.
    pub fn check(self) -> Result<PriorityConfig, ParamsError> {
        for (name, value) in [
            ("red share", self.red_share),
            ("yellow share", self.yellow_share),
            ("exploration share", self.exploration_share),
            ("compliance share", self.compliance_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ParamsError::Share { name, value });
            }
        }
        if self.red_share + self.yellow_share > 1.0 {
            return Err(ParamsError::SharesOverOne {
                red: self.red_share,
                yellow: self.yellow_share,
            });
        }
        if self.red_per_day.is_none() && self.compliance_share > self.red_share {
            return Err(ParamsError::ComplianceOverRed {
                compliance: self.compliance_share,
                red: self.red_share,
            });
        }
        if let Some(n) = self.red_per_day
            && !(n.is_finite() && n > 0.0)
        {
            return Err(ParamsError::RedPerDay(n));
        }
        for w in &self.category_weights {
            w.check()?;
        }
        if !(self.detection_value_eur.is_finite() && self.detection_value_eur >= 0.0) {
            return Err(ParamsError::DetectionValue(self.detection_value_eur));
        }
        Ok(PriorityConfig(self))
    }
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(name: &str) -> Result<Tz, ParamsError> {
    name.parse::<Tz>()
        .map_err(|_| ParamsError::TimeZone(name.to_owned()))
}

/// Checked channel settings ([`PriorityParams::check`]); read them through
/// `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityConfig(PriorityParams);

impl Default for PriorityConfig {
    /// The documented defaults, which [`PriorityParams::check`] accepts
    /// (a test says so).
    fn default() -> Self {
        Self(PriorityParams::default())
    }
}

impl std::ops::Deref for PriorityConfig {
    type Target = PriorityParams;

    fn deref(&self) -> &PriorityParams {
        &self.0
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

    /// The ranking key: the expected loss of releasing the declaration.
    /// P(undervaluation) × what an undervalued declaration of its value
    /// hides + P(any fraud) × (the tax gap on reference values and
    /// predicted sub-headings + its safety/IPR category weight).
    pub fn priority(&self, stakes: Stakes, category_eur: f64) -> f64 {
        stakes.p_undervaluation * stakes.undervaluation_eur
            + stakes.p_any * (stakes.revenue_gap_eur + category_eur + self.detection_value_eur)
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

/// Assigns channels as declarations flow, keeping RED per calendar day on
/// the capacity (or on the share of the day's traffic). Not shared; the
/// service wraps it in a lock.
#[derive(Debug, Clone)]
pub struct ChannelAllocator {
    config: PriorityConfig,
    quantiles: DecayingQuantiles,
    pace: DailyPace,
    observed: u64,
    /// RED-by-risk and YELLOW cut-offs and the share picked at random,
    /// refreshed every `CUT_REFRESH` declarations: reading the cut-offs off
    /// the histogram costs a scan.
    cuts: (f64, f64),
    random_share: f64,
    /// The latest decisions by declaration id: a resent declaration gets
    /// its decision again without counting as more traffic or taking more
    /// capacity (clients resend after any transport error).
    /// Keyed by [`declaration_key`] (64 bits: no string kept per declaration).
    decided: RecentKeys<Decision>,
}

/// Decisions remembered for resends.
const REMEMBERED_DECISIONS: usize = 1 << 16;

/// Declarations over which the priority distribution follows traffic
/// (half-life), in the service and in batch rescoring alike.
pub const CHANNEL_HALF_LIFE: f64 = 100_000.0;

const CUT_REFRESH: u64 = 64;

/// Observations before the cut-offs are trusted; until then only the random
/// picks go RED.
const WARM_UP: u64 = 200;

/// Where a declaration goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub channel: Channel,
    pub selection_reason: SelectionReason,
}

impl ChannelAllocator {
    /// `half_life` is in declarations: how fast old traffic stops counting
    /// in the priority distribution.
    pub fn new(config: PriorityConfig, half_life: f64) -> Self {
        Self {
            pace: DailyPace::new(config.time_zone),
            random_share: config.compliance_share,
            config,
            quantiles: DecayingQuantiles::new(half_life),
            observed: 0,
            cuts: (f64::INFINITY, f64::INFINITY),
            decided: RecentKeys::new(REMEMBERED_DECISIONS),
        }
    }

    pub fn config(&self) -> &PriorityConfig {
        &self.config
    }

    /// The calendar day (in the configured time zone) a declaration lodged
    /// at `at` counts in, as the Unix second it starts: the key under which
    /// replicas add up a day's traffic.
    pub fn day_start(&self, at: DateTime<Utc>) -> i64 {
        Day::containing(at, self.config.time_zone).start.timestamp()
    }

    /// Declarations counted in the current day, and the day's start.
    pub fn today(&self) -> (Option<i64>, f64) {
        (self.pace.day.map(|d| d.start.timestamp()), self.pace.seen)
    }

    /// Sets this replica's share of the day's traffic across the fleet
    /// (from a shared count), which scales `red_per_day`. Takes effect at
    /// the next refresh of the cut-offs (at most 64 declarations later).
    pub fn set_fleet_share(&mut self, share: f64) {
        if share.is_finite() {
            self.pace.fleet_share = share.clamp(1e-6, 1.0);
        }
    }

    /// The RED share of traffic in force now: what is left of today's
    /// target over the traffic expected in the rest of the day.
    pub fn red_share(&self) -> f64 {
        self.pace.red_share_now(&self.config)
    }

    /// Observes a declaration's priority and decides its channel.
    pub fn decide(
        &mut self,
        declaration_id: &str,
        lodged_at: DateTime<Utc>,
        priority: f64,
    ) -> Decision {
        let key = declaration_key(declaration_id);
        if let Some(decision) = self.decided.get(key) {
            return *decision;
        }
        let decision = self.decide_new(declaration_id, lodged_at, priority);
        if key != 0 {
            self.decided.insert(key, decision);
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
        let new_day = self.pace.observe(lodged_at);
        self.quantiles.observe(priority);
        let warm = self.observed >= WARM_UP;
        if new_day || self.observed % CUT_REFRESH == 0 || self.observed == WARM_UP {
            let red = self.red_share();
            // Random picks (the compliance sample, then exploration) come
            // out of RED capacity, not on top of it.
            let random =
                (self.config.compliance_share + red * self.config.exploration_share).min(red);
            let by_risk = red - random;
            self.cuts = (
                self.quantiles.upper_cut(by_risk),
                self.quantiles.upper_cut(by_risk + self.config.yellow_share),
            );
            self.random_share = random;
        }
        let (red_cut, yellow_cut) = self.cuts;
        // Today's capacity spent: nothing more goes RED today, not even a
        // random pick.
        let capacity_left = self.pace.capacity_left(&self.config);
        let lottery = self.config.lottery(declaration_id);
        let red = |selection_reason| Decision {
            channel: Channel::Red,
            selection_reason,
        };
        let decision = if capacity_left && lottery < self.config.compliance_share {
            red(SelectionReason::Random)
        } else if capacity_left && warm && priority > red_cut {
            red(SelectionReason::RiskScore)
        } else if capacity_left && lottery < self.random_share {
            // Exploration: the rest of the random share, among the others.
            red(SelectionReason::Random)
        } else if warm && priority > yellow_cut {
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
        if decision.channel == Channel::Red {
            self.pace.red += 1.0;
        }
        decision
    }
}

/// Slots of a day's volume profile (hours).
const SLOTS: usize = 24;

/// Weight of the last day's volume against what today has shown so far,
/// in shares of a day's traffic: after 5 % of today's expected traffic
/// both count equally, after half of it today's own pace dominates.
const PRIOR_WEIGHT: f64 = 0.05;

/// How much of the volume profile one day's shape moves.
const PROFILE_LEARNING: f64 = 0.3;

/// Declarations in a day before its shape teaches the profile.
const PROFILE_MIN_DAY: f64 = 2_400.0;

/// The least share of a day's traffic counted as still to come: keeps the
/// last minutes of a day from taking what capacity is left all at once.
const MIN_REMAINING: f64 = 1.0 / 96.0;

/// Declarations over which the moving average of the gap between
/// declarations follows volume, for the first day's volume estimate.
const VOLUME_MEMORY: f64 = 5_000.0;

/// Counts traffic and RED per calendar day and paces RED so that each day
/// ends on its target: what is left of the target over the traffic
/// expected in the rest of the day, estimated from the last day's volume,
/// today's pace so far and the usual shape of a day (by hour, learnt from
/// past days). The clock is the latest lodging time seen: a declaration
/// lodged before the current day (late, or out of order) counts in the
/// current day, which is when it takes an officer's time.
#[derive(Debug, Clone)]
struct DailyPace {
    time_zone: Tz,
    day: Option<Day>,
    clock: Option<DateTime<Utc>>,
    /// Declarations and RED decisions of the current day.
    seen: f64,
    red: f64,
    /// Fraction of the current day elapsed at its first declaration: a
    /// stream that starts in the middle of a day sees only the rest of it.
    covered_from: f64,
    by_slot: [f64; SLOTS],
    /// Share of a day's traffic per slot, summing to 1.
    profile: [f64; SLOTS],
    /// The last day's volume (extrapolated to a whole day when the stream
    /// began within it).
    last_total: Option<f64>,
    mean_gap_seconds: Option<f64>,
    observed: f64,
    /// Declarations in a row lodged more than [`MAX_STEP`] ahead of the
    /// clock, and the earliest of them.
    ahead: u32,
    ahead_earliest: Option<DateTime<Utc>>,
    /// This replica's share of today's traffic across every replica (1
    /// alone): `red_per_day` is the fleet's, so each takes its share.
    fleet_share: f64,
}

/// How far ahead of the clock one declaration may move it.
const MAX_STEP: chrono::TimeDelta = chrono::TimeDelta::hours(6);

/// Declarations in a row further ahead than [`MAX_STEP`] that move the clock.
const JUMP_CONFIRMATIONS: u32 = 32;

#[derive(Debug, Clone, Copy)]
struct Day {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Day {
    fn containing(at: DateTime<Utc>, tz: Tz) -> Day {
        let date = at.with_timezone(&tz).date_naive();
        let midnight = |d: NaiveDate| {
            // A midnight skipped by a clock change: the day starts at the
            // first instant that exists.
            let local = d.and_time(chrono::NaiveTime::MIN);
            tz.from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&(local + chrono::Duration::hours(1))))
        };
        let start = midnight(date).min(at);
        let end = date
            .succ_opt()
            .map_or(start + chrono::Duration::days(1), midnight);
        Day {
            start,
            end: end.max(at + chrono::Duration::seconds(1)),
        }
    }

    fn fraction(&self, at: DateTime<Utc>) -> f64 {
        let length = (self.end - self.start).num_milliseconds().max(1) as f64;
        ((at - self.start).num_milliseconds() as f64 / length).clamp(0.0, 1.0)
    }
}

impl DailyPace {
    fn new(time_zone: Tz) -> Self {
        Self {
            time_zone,
            day: None,
            clock: None,
            seen: 0.0,
            red: 0.0,
            covered_from: 0.0,
            by_slot: [0.0; SLOTS],
            profile: [1.0 / SLOTS as f64; SLOTS],
            last_total: None,
            mean_gap_seconds: None,
            observed: 0.0,
            ahead: 0,
            ahead_earliest: None,
            fleet_share: 1.0,
        }
    }

    /// Counts a declaration; true when it opens a new day.
    fn observe(&mut self, lodged_at: DateTime<Utc>) -> bool {
        self.observed += 1.0;
        let now = self.advance(lodged_at);
        if let Some(last) = self.clock {
            // Out-of-order lodging times count as simultaneous.
            let gap = (now - last).num_milliseconds().max(0) as f64 / 1000.0;
            let mean = self.mean_gap_seconds.get_or_insert(gap);
            *mean += (gap - *mean) / VOLUME_MEMORY.min(self.observed);
        }
        self.clock = Some(now);
        let new_day = self.day.is_none_or(|d| now >= d.end);
        if new_day {
            self.close_day();
            let day = Day::containing(now, self.time_zone);
            self.covered_from = day.fraction(now);
            self.day = Some(day);
        }
        self.seen += 1.0;
        let f = self.fraction();
        self.by_slot[((f * SLOTS as f64) as usize).min(SLOTS - 1)] += 1.0;
        new_day
    }

    /// Where the clock goes for a declaration lodged at `lodged_at`. A
    /// lodging time far ahead of the clock moves it only once
    /// [`JUMP_CONFIRMATIONS`] declarations in a row are that far ahead (then
    /// to the earliest of them): one declaration dated in 2030 must not end
    /// today for everyone, while traffic that resumes after a quiet night
    /// still moves the clock.
    fn advance(&mut self, lodged_at: DateTime<Utc>) -> DateTime<Utc> {
        let Some(clock) = self.clock else {
            return lodged_at;
        };
        if lodged_at <= clock + MAX_STEP {
            self.ahead = 0;
            self.ahead_earliest = None;
            return clock.max(lodged_at);
        }
        self.ahead += 1;
        let earliest = self.ahead_earliest.map_or(lodged_at, |e| e.min(lodged_at));
        if self.ahead >= JUMP_CONFIRMATIONS {
            self.ahead = 0;
            self.ahead_earliest = None;
            earliest
        } else {
            self.ahead_earliest = Some(earliest);
            clock
        }
    }

    /// Learns from the day that ends: its volume, and its shape if it was
    /// seen whole.
    fn close_day(&mut self) {
        if self.day.is_none() || self.seen == 0.0 {
            return;
        }
        let covered = 1.0 - self.cumulative(self.covered_from);
        if covered > 0.25 {
            self.last_total = Some(self.seen / covered);
        }
        if self.covered_from < 1.0 / SLOTS as f64 && self.seen >= PROFILE_MIN_DAY {
            for (p, n) in self.profile.iter_mut().zip(&self.by_slot) {
                *p += PROFILE_LEARNING * (n / self.seen - *p);
            }
        }
        self.seen = 0.0;
        self.red = 0.0;
        self.by_slot = [0.0; SLOTS];
    }

    /// Fraction of the current day elapsed at the clock.
    fn fraction(&self) -> f64 {
        match (self.day, self.clock) {
            (Some(day), Some(now)) => day.fraction(now),
            _ => 0.0,
        }
    }

    /// Share of a day's traffic expected before fraction `f` of it.
    fn cumulative(&self, f: f64) -> f64 {
        let position = f.clamp(0.0, 1.0) * SLOTS as f64;
        let whole = (position as usize).min(SLOTS);
        let mut share: f64 = self.profile[..whole].iter().sum();
        if whole < SLOTS {
            share += self.profile[whole] * (position - whole as f64);
        }
        share
    }

    /// Today's expected volume: today's count so far over the share of a
    /// day's traffic that should have come by now, weighed against the last
    /// day's volume; on the first day, the recent rate.
    fn expected_total(&self) -> Option<f64> {
        let elapsed = self.cumulative(self.fraction());
        let so_far = (elapsed - self.cumulative(self.covered_from)).max(0.0);
        match self.last_total {
            // The last day's weight fades as today shows itself: by the end
            // of the day only today's count remains.
            Some(last) => {
                let weight = PRIOR_WEIGHT * (1.0 - elapsed);
                Some((self.seen + weight * last) / (so_far + weight).max(1e-9))
            }
            None if so_far >= 0.1 => Some(self.seen / so_far),
            None => {
                let day = self.day?;
                let gap = self.mean_gap_seconds.filter(|g| *g > 0.0)?;
                let seconds = (day.end - day.start).num_milliseconds() as f64 / 1000.0;
                Some((seconds / gap).max(self.seen))
            }
        }
    }

    /// RED wanted today in all: the capacity, or the share of what has
    /// come and what is expected to come.
    fn target(&self, config: &PriorityConfig, expected: f64) -> f64 {
        match config.red_per_day {
            // Replicas share the day's capacity by their share of its traffic.
            Some(capacity) => capacity * self.fleet_share,
            None => config.red_share * (self.seen + self.remaining(expected)),
        }
    }

    /// Traffic expected in the rest of the day.
    fn remaining(&self, expected: f64) -> f64 {
        (expected - self.seen)
            .max(0.0)
            .min(expected * (1.0 - self.cumulative(self.fraction())))
    }

    fn capacity_left(&self, config: &PriorityConfig) -> bool {
        match self.expected_total() {
            Some(expected) => self.red < self.target(config, expected),
            // Nothing known of volume yet: only a share can be honoured.
            None => config.red_per_day.is_none(),
        }
    }

    fn red_share_now(&self, config: &PriorityConfig) -> f64 {
        let Some(expected) = self.expected_total() else {
            return if config.red_per_day.is_some() {
                0.0
            } else {
                config.red_share
            };
        };
        let remaining = self.remaining(expected).max(expected * MIN_REMAINING);
        ((self.target(config, expected) - self.red) / remaining.max(1.0)).clamp(0.0, 1.0)
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
        let (observed, seen) = (a.observed, a.pace.seen);
        for _ in 0..50 {
            assert_eq!(a.decide("R", t0 + Duration::seconds(600), 1e9), first);
        }
        assert_eq!((a.observed, a.pace.seen), (observed, seen));
        // Declarations without an id are each new.
        a.decide("", t0 + Duration::seconds(601), 1.0);
        a.decide("", t0 + Duration::seconds(602), 1.0);
        assert_eq!(a.observed, observed + 2);
    }

    /// One day of traffic: its volume and how busy each quarter hour is
    /// (relative weights).
    struct DayOfTraffic {
        volume: usize,
        busy: fn(usize) -> f64,
    }

    fn flat(_: usize) -> f64 {
        1.0
    }

    /// A day shaped like a cargo hub's: quiet nights, a busy afternoon.
    fn diurnal(quarter: usize) -> f64 {
        let hour = quarter as f64 / 4.0;
        1.2 + (std::f64::consts::PI * (hour - 8.0) / 12.0).sin()
    }

    /// Three times the usual traffic from 10:00 to 14:00.
    fn swing(quarter: usize) -> f64 {
        if (40..56).contains(&quarter) {
            3.0
        } else {
            1.0
        }
    }

    /// Streams the days through an allocator in lodging order, with
    /// heavy-tailed priorities, and counts RED and traffic per calendar day
    /// of `tz` (days start at local midnight of 2026-09-01).
    fn red_per_day(config: PriorityConfig, days: &[DayOfTraffic], seed: u64) -> Vec<(u64, u64)> {
        let tz = config.time_zone;
        let mut allocator = ChannelAllocator::new(config, CHANNEL_HALF_LIFE);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let first = tz
            .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let mut counts = Vec::new();
        for (d, day) in days.iter().enumerate() {
            let start = first + Duration::days(d as i64);
            let weights: Vec<f64> = (0..96).map(day.busy).collect();
            let total: f64 = weights.iter().sum();
            let mut times: Vec<DateTime<Utc>> = (0..day.volume)
                .map(|_| {
                    let mut pick = rng.r#gen::<f64>() * total;
                    let quarter = weights
                        .iter()
                        .position(|w| {
                            pick -= w;
                            pick < 0.0
                        })
                        .unwrap_or(95);
                    let ms = (quarter as f64 + rng.r#gen::<f64>()) * 900_000.0;
                    start + Duration::milliseconds(ms as i64)
                })
                .collect();
            times.sort();
            let mut red = 0;
            for (i, at) in times.iter().enumerate() {
                let priority = rng.r#gen::<f64>().powi(8) * 20.0;
                let decision = allocator.decide(&format!("{seed}-{d}-{i}"), *at, priority);
                red += u64::from(decision.channel == Channel::Red);
            }
            counts.push((red, day.volume as u64));
        }
        counts
    }

    fn capacity(n: f64) -> PriorityConfig {
        PriorityParams {
            red_per_day: Some(n),
            ..PriorityParams::default()
        }
        .check()
        .unwrap()
    }

    /// Every day after the first within 10 % of `target(volume)`.
    fn assert_within_ten_percent(counts: &[(u64, u64)], target: impl Fn(u64) -> f64) {
        for (day, &(red, volume)) in counts.iter().enumerate().skip(1) {
            let want = target(volume);
            assert!(
                (red as f64 - want).abs() <= 0.1 * want,
                "day {}: {red} RED of {volume}, target {want}; all days: {counts:?}",
                day + 1
            );
        }
    }

    #[test]
    fn red_per_day_holds_capacity_when_volume_doubles_then_halves() {
        let days = [20_000, 40_000, 20_000, 10_000, 20_000]
            .map(|volume| DayOfTraffic { volume, busy: flat });
        for seed in [1, 2] {
            let counts = red_per_day(capacity(50.0), &days, seed);
            assert_within_ten_percent(&counts, |_| 50.0);
        }
    }

    #[test]
    fn red_per_day_holds_capacity_through_a_swing_within_a_day() {
        let day = |volume, busy| DayOfTraffic { volume, busy };
        let days = [
            day(20_000, flat),
            day(20_000, flat),
            day(32_000, swing),
            day(20_000, flat),
        ];
        let counts = red_per_day(capacity(50.0), &days, 3);
        assert_within_ten_percent(&counts, |_| 50.0);
    }

    #[test]
    fn red_per_day_holds_capacity_on_shaped_days_in_the_local_time_zone() {
        let config = PriorityParams {
            red_per_day: Some(80.0),
            time_zone: chrono_tz::Europe::Brussels,
            ..PriorityParams::default()
        }
        .check()
        .unwrap();
        let days = [30_000, 30_000, 60_000, 30_000, 15_000].map(|volume| DayOfTraffic {
            volume,
            busy: diurnal,
        });
        let counts = red_per_day(config, &days, 4);
        assert_within_ten_percent(&counts, |_| 80.0);
    }

    #[test]
    fn a_declaration_dated_years_ahead_does_not_end_the_day_but_resumed_traffic_moves_on() {
        let mut a = ChannelAllocator::new(capacity(50.0), CHANNEL_HALF_LIFE);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
        let future = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut red_on = |a: &mut ChannelAllocator, day: i64, from: u32, to: u32| {
            let mut red = 0;
            for i in from..to {
                let at = t0 + Duration::days(day) + Duration::milliseconds(i64::from(i) * 4_320);
                // A faulty client's declaration dated 2030 every 1,000.
                if i % 1000 == 500 {
                    a.decide(&format!("F{day}-{i}"), future, 0.0);
                }
                let priority = rng.r#gen::<f64>().powi(8) * 20.0;
                let d = a.decide(&format!("D{day}-{i}"), at, priority);
                red += u32::from(d.channel == Channel::Red);
            }
            red
        };
        red_on(&mut a, 0, 0, 20_000);
        let second = red_on(&mut a, 1, 0, 20_000);
        assert!((45..=55).contains(&second), "day 2: {second} RED");
        // Two quiet days, then traffic again: the clock moves on and RED
        // is counted in the new day.
        let resumed = red_on(&mut a, 4, 0, 20_000);
        assert!((45..=55).contains(&resumed), "day 5: {resumed} RED");
    }

    #[test]
    fn red_share_holds_per_day_when_volume_changes() {
        let config = PriorityParams {
            red_share: 0.005,
            yellow_share: 0.02,
            ..PriorityParams::default()
        }
        .check()
        .unwrap();
        let days = [20_000, 40_000, 10_000, 20_000].map(|volume| DayOfTraffic {
            volume,
            busy: diurnal,
        });
        let counts = red_per_day(config, &days, 5);
        assert_within_ten_percent(&counts, |volume| 0.005 * volume as f64);
    }

    #[test]
    fn default_params_are_valid_and_nonsense_is_refused() {
        assert_eq!(
            PriorityParams::default().check().unwrap(),
            PriorityConfig::default()
        );
        let bad = |p: PriorityParams| p.check().unwrap_err();
        assert!(matches!(
            bad(PriorityParams {
                exploration_share: 1.5,
                ..PriorityParams::default()
            }),
            ParamsError::Share {
                name: "exploration share",
                ..
            }
        ));
        assert!(matches!(
            bad(PriorityParams {
                red_share: f64::NAN,
                ..PriorityParams::default()
            }),
            ParamsError::Share { .. }
        ));
        assert!(matches!(
            bad(PriorityParams {
                red_share: 0.7,
                yellow_share: 0.5,
                ..PriorityParams::default()
            }),
            ParamsError::SharesOverOne { .. }
        ));
        for n in [0.0, -1.0, f64::INFINITY] {
            assert!(matches!(
                bad(PriorityParams {
                    red_per_day: Some(n),
                    ..PriorityParams::default()
                }),
                ParamsError::RedPerDay(_)
            ));
        }
        for v in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                bad(PriorityParams {
                    detection_value_eur: v,
                    ..PriorityParams::default()
                }),
                ParamsError::DetectionValue(_)
            ));
        }
        assert!(matches!(
            bad(PriorityParams {
                category_weights: vec![CategoryWeight {
                    hs_prefix: "95a3".into(),
                    eur: 1.0
                }],
                ..PriorityParams::default()
            }),
            ParamsError::CategoryWeight(_)
        ));
        assert!(parse_time_zone("Europe/Brussels").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn category_weights_parse_and_bad_ones_are_refused() {
        let w: CategoryWeight = "9503=5".parse().unwrap();
        assert_eq!((w.hs_prefix.as_str(), w.eur), ("9503", 5.0));
        assert_eq!(" 85 = 2.5".parse::<CategoryWeight>().unwrap().eur, 2.5);
        for bad in [
            "9503",
            "9=1",
            "1234567=1",
            "95a3=1",
            "9503=-1",
            "9503=abc",
            "9503=inf",
        ] {
            assert!(bad.parse::<CategoryWeight>().is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_writes_the_same_text_as_to_string() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn random_picks_are_stable_and_near_their_share() {
        let config = PriorityParams {
            secret_seed: 42,
            ..PriorityParams::default()
        }
        .check()
        .unwrap();
        let picks = |c: &PriorityConfig| {
            (0..200_000)
                .filter(|i| c.lottery(&format!("D{i}")) < 0.01)
                .count()
        };
        let first = picks(&config);
        assert_eq!(first, picks(&config), "same ids, same seed, same picks");
        assert!((1_800..2_200).contains(&first), "{first}");
        let other = PriorityParams {
            secret_seed: 43,
            ..PriorityParams::default()
        }
        .check()
        .unwrap();
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
        let stakes = Stakes {
            p_any: 0.5,
            p_undervaluation: 0.2,
            revenue_gap_eur: 10.0,
            undervaluation_eur: 30.0,
        };
        assert_eq!(c.priority(stakes, 5.0), 0.2 * 30.0 + 0.5 * 15.0);
    }

    #[test]
    fn a_detection_value_puts_certain_frauds_before_doubtful_stakes() {
        let sure = Stakes {
            p_any: 0.99,
            p_undervaluation: 0.99,
            revenue_gap_eur: 2.0,
            undervaluation_eur: 4.0,
        };
        let doubtful = Stakes {
            p_any: 0.3,
            p_undervaluation: 0.3,
            revenue_gap_eur: 10.0,
            undervaluation_eur: 20.0,
        };
        let fiscal = PriorityConfig::default();
        assert!(fiscal.priority(sure, 0.0) < fiscal.priority(doubtful, 0.0));
        let valued = PriorityParams {
            detection_value_eur: 20.0,
            ..PriorityParams::default()
        }
        .check()
        .unwrap();
        assert!(valued.priority(sure, 0.0) > valued.priority(doubtful, 0.0));
    }
}
