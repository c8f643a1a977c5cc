//! Synthetic Liège traffic with ground truth.
//!
//! A population of sellers (long tail, ~91 % in China, a minority of rogue
//! sellers where fraud concentrates), repeat buyers across the member states,
//! a few declarants and several days of flights is drawn from the seed. Each
//! parcel is then drawn from its own chunk's random stream, so the output is
//! identical for a seed whatever the number of threads.
//!
//! Frauds of domain research §2 and §4.3 are injected at configurable rates,
//! each with its own label, and a legacy inspection process labels a small
//! share of parcels (rule-selected plus random) with the selection reason, as
//! real customs data has. The full truth goes in `TrainingExample.truth`.
//!
//! The generator writes wire messages directly: it plays the part of a
//! clearance system sending traffic, so it sits at the edge with `io` and `grpc`.

pub mod catalog;
mod population;
mod stats;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::domain::{Currency, RateTable};
use crate::pb;

use catalog::{CATEGORIES, VAGUE_DESCRIPTIONS};
use population::{Population, Seller};
pub use stats::Stats;

/// What to generate. Rates are shares of parcels before seller concentration.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub parcels: u64,
    pub seed: u64,
    /// Days of arrivals.
    pub days: u32,
    /// First day of arrivals (midnight UTC).
    pub start: DateTime<Utc>,
    pub undervaluation_rate: f64,
    pub misdescription_rate: f64,
    pub misclassification_rate: f64,
    pub split_rate: f64,
    pub ioss_misuse_rate: f64,
    pub address_reuse_rate: f64,
    /// Share of parcels the legacy rules select for control (approximate).
    pub rule_inspection_rate: f64,
    /// Share of parcels picked at random for compliance measurement.
    pub random_inspection_rate: f64,
    /// Chance that a control finds a fraud that is there.
    pub detection_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            parcels: 10_000,
            seed: 1,
            days: 7,
            start: Utc
                .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
                .single()
                .expect("valid date"),
            undervaluation_rate: 0.10,
            misdescription_rate: 0.04,
            misclassification_rate: 0.03,
            split_rate: 0.015,
            ioss_misuse_rate: 0.01,
            address_reuse_rate: 0.01,
            rule_inspection_rate: 0.02,
            random_inspection_rate: 0.005,
            detection_rate: 0.9,
        }
    }
}

/// Bad generator settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeneratorError {
    #[error("{name} must be within 0..=1, got {value}")]
    RateOutOfRange { name: &'static str, value: f64 },
    #[error("days must be at least 1")]
    NoDays,
}

impl GeneratorConfig {
    /// Checks the rates.
    pub fn check(&self) -> Result<(), GeneratorError> {
        for (name, value) in [
            ("undervaluation_rate", self.undervaluation_rate),
            ("misdescription_rate", self.misdescription_rate),
            ("misclassification_rate", self.misclassification_rate),
            ("split_rate", self.split_rate),
            ("ioss_misuse_rate", self.ioss_misuse_rate),
            ("address_reuse_rate", self.address_reuse_rate),
            ("rule_inspection_rate", self.rule_inspection_rate),
            ("random_inspection_rate", self.random_inspection_rate),
            ("detection_rate", self.detection_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(GeneratorError::RateOutOfRange { name, value });
            }
        }
        if self.days == 0 {
            return Err(GeneratorError::NoDays);
        }
        Ok(())
    }
}

/// Parcels per random stream. Fixed, so output does not depend on threads.
pub const CHUNK_PARCELS: u64 = 4096;

/// The generator: population plus config.
pub struct Generator {
    config: GeneratorConfig,
    population: Population,
    rates: &'static RateTable,
    cny: Currency,
    usd: Currency,
}

/// Flights a day land at Liège in the simulation (one master AWB each).
const FLIGHTS_PER_DAY: u64 = 8;
const FLIGHT_NUMBERS: &[&str] = &[
    "CA1041", "3S8824", "CK251", "O36890", "5Y8401", "TK6470", "QY7123", "ET3720",
];

impl Generator {
    pub fn new(config: GeneratorConfig) -> Result<Self, GeneratorError> {
        config.check()?;
        let population = Population::new(config.seed, config.parcels);
        Ok(Self {
            config,
            population,
            rates: RateTable::built_in(),
            cny: Currency::parse("CNY").expect("constant code"),
            usd: Currency::parse("USD").expect("constant code"),
        })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Number of chunks for the configured parcel count.
    pub fn chunk_count(&self) -> u64 {
        self.config.parcels.div_ceil(CHUNK_PARCELS)
    }

    /// Chunk `index` as checked domain examples. Generated records always
    /// pass validation (tests check it on every chunk they read).
    pub fn domain_chunk(&self, index: u64) -> Vec<crate::domain::TrainingExample> {
        self.chunk(index)
            .0
            .into_iter()
            .filter_map(|e| crate::domain::TrainingExample::try_from(e).ok())
            .collect()
    }

    /// Generates chunk `index` (parcels `index * CHUNK_PARCELS ..`), in order.
    pub fn chunk(&self, index: u64) -> (Vec<pb::TrainingExample>, Stats) {
        let first = index * CHUNK_PARCELS;
        let end = (first + CHUNK_PARCELS).min(self.config.parcels);
        let mut rng = SmallRng::seed_from_u64(
            self.config
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03)),
        );
        let mut out = Vec::with_capacity((end - first) as usize);
        let mut stats = Stats::default();
        let mut next = first;
        while next < end {
            let room = end - next;
            for parcel in self.order(&mut rng, next, room) {
                stats.record(&parcel, self.rates);
                out.push(parcel);
                next += 1;
            }
        }
        (out, stats)
    }

    /// When parcel `index` arrives: flights spread evenly over the days.
    fn flight_of(&self, index: u64) -> (u64, DateTime<Utc>) {
        let flights = FLIGHTS_PER_DAY * u64::from(self.config.days);
        let flight = index * flights / self.config.parcels.max(1);
        let hours = 24 / FLIGHTS_PER_DAY as i64;
        let arrival = self.config.start + Duration::hours(flight as i64 * hours + 2);
        (flight, arrival)
    }

    /// One order: usually one parcel, several when it is split.
    fn order(&self, rng: &mut SmallRng, first_index: u64, room: u64) -> Vec<pb::TrainingExample> {
        let seller_index = self.population.sample_seller(rng);
        let seller = &self.population.sellers[seller_index];
        let m = seller.fraud_multiplier;
        let c = &self.config;
        let p = |rate: f64| (rate * m).min(0.95);

        let split = room >= 2 && rng.gen_bool(p(c.split_rate));
        let buyer_index = self.population.sample_buyer(rng);
        let mut order_items = self.draw_items(rng, seller);
        if split {
            // The order is worth more than EUR 150 in truth; top it up with
            // articles of the seller's own lines until it is.
            while total_eur(&order_items) <= 180.0 {
                let more = self.draw_items(rng, seller);
                order_items.extend(more);
            }
        } else {
            // An honest H7 consignment stays under the threshold.
            while total_eur(&order_items) > 150.0 && order_items.len() > 1 {
                order_items.pop();
            }
        }
        let parts: Vec<Vec<TrueItem>> = if split {
            let mut parts: Vec<Vec<TrueItem>> = Vec::new();
            let mut current: Vec<TrueItem> = Vec::new();
            for item in order_items {
                if !current.is_empty() && total_eur(&current) + item.value_eur > 148.0 {
                    parts.push(std::mem::take(&mut current));
                }
                current.push(item);
            }
            parts.push(current);
            parts.truncate(room as usize);
            parts
        } else {
            vec![order_items]
        };
        let split = parts.len() >= 2;
        let order_ref = format!("ORD{}{:09}", c.seed % 100, first_index);
        parts
            .into_iter()
            .enumerate()
            .map(|(k, items)| {
                self.parcel(
                    rng,
                    first_index + k as u64,
                    seller_index,
                    buyer_index,
                    items,
                    split,
                    &order_ref,
                )
            })
            .collect()
    }

    fn draw_items(&self, rng: &mut SmallRng, seller: &Seller) -> Vec<TrueItem> {
        let roll: f64 = rng.r#gen();
        let count = if roll < 0.6 {
            1
        } else if roll < 0.9 {
            rng.gen_range(2..=3)
        } else {
            rng.gen_range(4..=8)
        };
        (0..count)
            .map(|_| {
                let category = if rng.gen_bool(0.7) {
                    seller.specialties[rng.gen_range(0..seller.specialties.len())]
                } else {
                    self.population.sample_category(rng)
                };
                TrueItem::draw(rng, category)
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn parcel(
        &self,
        rng: &mut SmallRng,
        index: u64,
        seller_index: usize,
        buyer_index: usize,
        items: Vec<TrueItem>,
        split: bool,
        order_ref: &str,
    ) -> pb::TrainingExample {
        let c = &self.config;
        let seller = &self.population.sellers[seller_index];
        let p = |rate: f64| (rate * seller.fraud_multiplier).min(0.95);
        let mut frauds: Vec<pb::FraudKind> = Vec::new();
        if split {
            frauds.push(pb::FraudKind::SplitConsignment);
        }

        // Declared goods start as the truth; fraud mechanisms then bend them.
        let mut declared: Vec<DeclaredItem> = items
            .iter()
            .map(|t| DeclaredItem {
                description: t.description.to_owned(),
                hs6: CATEGORIES[t.category].hs6,
                value_eur: t.value_eur,
            })
            .collect();

        if rng.gen_bool(p(c.misdescription_rate)) {
            // Hide the most valuable item; its true mass stays on the declaration.
            let target = most_valuable(&items);
            let category = &CATEGORIES[items[target].category];
            let use_cover = !category.covers.is_empty() && rng.gen_bool(0.5);
            if use_cover {
                let cover_hs6 = category.covers[rng.gen_range(0..category.covers.len())];
                let cover = &CATEGORIES
                    [catalog::index_of(cover_hs6).expect("covers are checked by a test")];
                let d = &mut declared[target];
                d.description =
                    cover.descriptions[rng.gen_range(0..cover.descriptions.len())].to_owned();
                d.hs6 = cover.hs6;
                d.value_eur = d.value_eur.min(
                    rng.gen_range(cover.price_eur.0..=cover.price_eur.1)
                        * f64::from(items[target].quantity),
                );
            } else {
                declared[target].description =
                    VAGUE_DESCRIPTIONS[rng.gen_range(0..VAGUE_DESCRIPTIONS.len())].to_owned();
            }
            frauds.push(pb::FraudKind::Misdescription);
        }

        if rng.gen_bool(p(c.misclassification_rate)) {
            let candidates: Vec<usize> = (0..items.len())
                .filter(|&i| {
                    CATEGORIES[items[i].category].lower_duty_hs6.is_some()
                        && declared[i].hs6 == CATEGORIES[items[i].category].hs6
                })
                .collect();
            if !candidates.is_empty() {
                let i = candidates[rng.gen_range(0..candidates.len())];
                declared[i].hs6 = CATEGORIES[items[i].category]
                    .lower_duty_hs6
                    .expect("filtered above");
                frauds.push(pb::FraudKind::Misclassification);
            }
        }

        let true_total = total_eur(&items);
        let undervalue = !split && (true_total > 150.0 || rng.gen_bool(p(c.undervaluation_rate)));
        if undervalue {
            let declared_total: f64 = declared.iter().map(|d| d.value_eur).sum();
            let factor = if true_total > 150.0 {
                // Bunching just under the H7 threshold.
                rng.gen_range(135.0..149.9) / declared_total
            } else if rng.gen_bool(0.3) {
                // Just above the customs price floor (half the typical price).
                let floor: f64 = items
                    .iter()
                    .map(|t| 0.5 * CATEGORIES[t.category].typical_price() * f64::from(t.quantity))
                    .sum();
                (floor * rng.gen_range(1.0..1.12) / declared_total).min(rng.gen_range(0.4..0.7))
            } else {
                rng.gen_range(0.1..0.6)
            };
            for d in &mut declared {
                d.value_eur *= factor;
            }
        }
        let declared_total: f64 = declared.iter().map(|d| d.value_eur).sum();
        if declared_total < 0.7 * true_total {
            frauds.push(pb::FraudKind::Undervaluation);
        }

        // Parties.
        let buyer = &self.population.buyers[buyer_index];
        let mut importer = buyer.party.clone();
        if rng.gen_bool(p(c.address_reuse_rate)) {
            let drop = &self.population.drop_addresses
                [rng.gen_range(0..self.population.drop_addresses.len())];
            importer = pb::Party {
                name: self.population.random_person_name(rng),
                identification_number: String::new(),
                address: Some(drop.clone()),
                phone: String::new(),
                email: String::new(),
            };
            frauds.push(pb::FraudKind::AddressReuse);
        }
        let mut ioss_number = seller.ioss_number.clone();
        if rng.gen_bool(p(c.ioss_misuse_rate)) {
            let leaked =
                &self.population.leaked_ioss[rng.gen_range(0..self.population.leaked_ioss.len())];
            if *leaked != ioss_number {
                ioss_number = leaked.clone();
                frauds.push(pb::FraudKind::IossMisuse);
            }
        } else if !ioss_number.is_empty() && true_total > 150.0 {
            // IOSS on goods worth more than EUR 150 in truth.
            frauds.push(pb::FraudKind::IossMisuse);
        }
        frauds.sort_by_key(|k| *k as i32);
        frauds.dedup();

        // Money in the invoicing currency.
        let currency = if rng.gen_bool(0.8) {
            Currency::EUR
        } else if rng.gen_bool(0.75) {
            self.cny
        } else {
            self.usd
        };
        let money = |eur: f64| {
            let m = self
                .rates
                .from_eur(eur.max(0.01), currency)
                .expect("generator currencies are in the rate table");
            pb::Money {
                currency: m.currency.as_str().to_owned(),
                amount_minor: m.amount_minor.max(1),
            }
        };
        let procedure_codes: Vec<String> = if ioss_number.is_empty() {
            if rng.gen_bool(0.3) {
                vec!["C07".into(), "F49".into()]
            } else {
                vec!["C07".into()]
            }
        } else {
            vec!["C07".into(), "F48".into()]
        };

        let (flight, arrival) = self.flight_of(index);
        let lodged_at = arrival - Duration::seconds(rng.gen_range(1800..72_000));
        let origin = seller.country.clone();
        let goods: Vec<pb::GoodsItem> = items
            .iter()
            .zip(&declared)
            .enumerate()
            .map(|(i, (t, d))| pb::GoodsItem {
                goods_item_number: i as u32 + 1,
                description: d.description.clone(),
                hs6: d.hs6.to_owned(),
                intrinsic_value: Some(money(d.value_eur)),
                gross_mass_g: t.mass_g,
                quantity: t.quantity,
                additional_procedure_codes: procedure_codes.clone(),
                country_of_origin: if rng.gen_bool(0.6) {
                    origin.clone()
                } else {
                    String::new()
                },
            })
            .collect();
        let truth_items: Vec<pb::ItemTruth> = items
            .iter()
            .enumerate()
            .map(|(i, t)| pb::ItemTruth {
                goods_item_number: i as u32 + 1,
                hs6: CATEGORIES[t.category].hs6.to_owned(),
                description: t.description.to_owned(),
                intrinsic_value: Some(money(t.value_eur)),
            })
            .collect();
        let total_mass: i64 = goods.iter().map(|g| g.gross_mass_g).sum();
        let declarant =
            &self.population.declarants[seller_index % self.population.declarants.len()];
        let channel = match seller_index % 20 {
            0..=15 => pb::CarrierChannel::Express,
            16..=18 => pb::CarrierChannel::Postal,
            _ => pb::CarrierChannel::AirCargo,
        };
        let mut attributes = std::collections::HashMap::new();
        attributes.insert("platform".to_owned(), seller.platform.to_owned());
        attributes.insert(
            "payment_method".to_owned(),
            ["card", "paypal", "wallet"][rng.gen_range(0..3)].to_owned(),
        );
        let declaration_id = format!("PR{}-{index:010}", c.seed);
        let ens = rng.gen_bool(0.3).then(|| pb::EnsHouseConsignment {
            ens_mrn: format!("26BE{index:014}"),
            consignor: None,
            consignee: Some(pb::Party {
                name: importer.name.clone(),
                ..Default::default()
            }),
            total_gross_mass_g: total_mass,
            description: goods[0].description.clone(),
            country_of_origin: origin.clone(),
        });
        let declaration = pb::Declaration {
            declaration_id: declaration_id.clone(),
            lrn: format!("L{:02}{index:012}", c.seed % 100),
            mrn: String::new(),
            dataset: pb::DatasetType::H7 as i32,
            additional_declaration_type: "A".into(),
            lodged_at: Some(crate::wire::declaration::timestamp_to_pb(lodged_at)),
            ucr: order_ref.to_owned(),
            exporter: Some(seller.party.clone()),
            importer: Some(importer),
            declarant: Some(declarant.clone()),
            ioss_number,
            transport_documents: vec![
                pb::TransportDocument {
                    kind: pb::TransportDocumentKind::HouseAwb as i32,
                    reference: format!("H{index:011}"),
                },
                pb::TransportDocument {
                    kind: pb::TransportDocumentKind::MasterAwb as i32,
                    reference: format!("176-{:08}", 10_000_000 + flight),
                },
            ],
            location_of_goods: "BELGG".into(),
            carrier_channel: channel as i32,
            flight_number: FLIGHT_NUMBERS[(flight % FLIGHT_NUMBERS.len() as u64) as usize].into(),
            arrival_at: Some(crate::wire::declaration::timestamp_to_pb(arrival)),
            transport_and_insurance_costs: Some(money(rng.gen_range(0.0..4.0))),
            items: goods,
            ens,
            attributes,
        };

        let result = self.inspect(
            rng,
            &declaration,
            &frauds,
            &items,
            &declared,
            seller,
            arrival,
            &money,
        );
        pb::TrainingExample {
            declaration: Some(declaration),
            result,
            truth: Some(pb::GroundTruth {
                fraud_kinds: frauds.iter().map(|k| *k as i32).collect(),
                items: truth_items,
                seller_profile: if seller.rogue { "rogue" } else { "honest" }.into(),
            }),
        }
    }

    /// The legacy control process: simple rules officers use today (vague
    /// descriptions, values near EUR 150, sellers on a watch list, expensive
    /// parcels) plus a random compliance sample.
    #[allow(clippy::too_many_arguments)]
    fn inspect(
        &self,
        rng: &mut SmallRng,
        declaration: &pb::Declaration,
        frauds: &[pb::FraudKind],
        items: &[TrueItem],
        declared: &[DeclaredItem],
        seller: &Seller,
        arrival: DateTime<Utc>,
        money: &impl Fn(f64) -> pb::Money,
    ) -> Option<pb::InspectionResult> {
        let c = &self.config;
        let declared_total: f64 = declared.iter().map(|d| d.value_eur).sum();
        let vague = declared
            .iter()
            .any(|d| crate::domain::validation::is_vague_description(&d.description));
        let weight = 1.0
            + 6.0 * f64::from(u8::from(vague))
            + 3.0 * f64::from(u8::from((120.0..150.0).contains(&declared_total)))
            + 4.0 * f64::from(u8::from(seller.watch_listed))
            + 1.0 * f64::from(u8::from(declared_total > 60.0));
        // The mean weight over traffic is about 1.6, so this keeps the rule
        // share near the configured rate.
        let rule_selected = rng.gen_bool((c.rule_inspection_rate * weight / 1.6).min(1.0));
        let random_selected = rng.gen_bool(c.random_inspection_rate);
        let reason = match (rule_selected, random_selected) {
            (_, true) => pb::SelectionReason::Random,
            (true, false) => pb::SelectionReason::Rule,
            (false, false) => return None,
        };
        let detected = !frauds.is_empty() && rng.gen_bool(c.detection_rate);
        let findings = if detected {
            items
                .iter()
                .zip(declared)
                .enumerate()
                .filter_map(|(i, (t, d))| {
                    let undervalued = d.value_eur < 0.7 * t.value_eur;
                    let true_hs6 = CATEGORIES[t.category].hs6;
                    let misdescribed = d.description != t.description;
                    let misclassified = d.hs6 != true_hs6;
                    (undervalued || misdescribed || misclassified).then(|| pb::ItemFinding {
                        goods_item_number: i as u32 + 1,
                        undervalued,
                        corrected_intrinsic_value: undervalued.then(|| money(t.value_eur)),
                        misdescribed,
                        corrected_description: if misdescribed {
                            t.description.to_owned()
                        } else {
                            String::new()
                        },
                        corrected_hs6: if misclassified || misdescribed && d.hs6 != true_hs6 {
                            true_hs6.to_owned()
                        } else {
                            String::new()
                        },
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(pb::InspectionResult {
            declaration_id: declaration.declaration_id.clone(),
            inspection_id: format!("I-{}", declaration.declaration_id),
            selection_reason: reason as i32,
            control_type: if rng.gen_bool(0.7) {
                pb::Channel::Red
            } else {
                pb::Channel::Yellow
            } as i32,
            outcome: if detected {
                pb::InspectionOutcome::NonCompliant
            } else {
                pb::InspectionOutcome::Compliant
            } as i32,
            fraud_kinds: if detected {
                frauds.iter().map(|k| *k as i32).collect()
            } else {
                Vec::new()
            },
            findings,
            inspected_at: Some(crate::wire::declaration::timestamp_to_pb(
                arrival + Duration::minutes(rng.gen_range(30..1800)),
            )),
            officer_notes: String::new(),
        })
    }
}

/// An article as it really is.
#[derive(Debug, Clone)]
struct TrueItem {
    category: usize,
    description: &'static str,
    quantity: u32,
    value_eur: f64,
    mass_g: i64,
}

impl TrueItem {
    fn draw(rng: &mut SmallRng, category: usize) -> Self {
        let c = &CATEGORIES[category];
        let quantity = if rng.gen_bool(0.92) {
            1
        } else {
            rng.gen_range(2..=3)
        };
        // Lognormal with the price range as its 5th and 95th percentiles.
        let (lo, hi) = c.price_eur;
        let sigma = (hi / lo).ln() / (2.0 * 1.645);
        let unit_price = LogNormal::new(c.typical_price().ln(), sigma)
            .expect("sigma is positive")
            .sample(rng);
        let unit_mass = rng.gen_range(c.mass_kg.0..=c.mass_kg.1);
        // Outer packaging: 10-60 g per parcel line.
        let mass_g =
            (unit_mass * f64::from(quantity) * 1000.0 + rng.gen_range(10.0..60.0)).round() as i64;
        Self {
            category,
            description: c.descriptions[rng.gen_range(0..c.descriptions.len())],
            quantity,
            value_eur: (unit_price * f64::from(quantity) * 100.0).round() / 100.0,
            mass_g,
        }
    }
}

impl catalog::Category {
    /// Median price: the geometric mean of the range.
    pub fn typical_price(&self) -> f64 {
        (self.price_eur.0 * self.price_eur.1).sqrt()
    }
}

/// An article as declared.
#[derive(Debug, Clone)]
struct DeclaredItem {
    description: String,
    hs6: &'static str,
    value_eur: f64,
}

fn total_eur(items: &[TrueItem]) -> f64 {
    items.iter().map(|i| i.value_eur).sum()
}

fn most_valuable(items: &[TrueItem]) -> usize {
    let mut best = 0;
    for (i, item) in items.iter().enumerate() {
        if item.value_eur > items[best].value_eur {
            best = i;
        }
    }
    best
}

/// What an officer finds when controlling a synthetic parcel: the ground
/// truth of the file, seen in full (a perfect control). `None` when the
/// example carries no truth or no declaration.
pub fn officer_finds(
    example: &pb::TrainingExample,
    inspection_id: String,
    selection_reason: pb::SelectionReason,
    control_type: pb::Channel,
    inspected_at: DateTime<Utc>,
) -> Option<pb::InspectionResult> {
    let d = example.declaration.as_ref()?;
    let truth = example.truth.as_ref()?;
    let findings: Vec<pb::ItemFinding> = d
        .items
        .iter()
        .filter_map(|item| {
            let t = truth
                .items
                .iter()
                .find(|t| t.goods_item_number == item.goods_item_number)?;
            let declared = item.intrinsic_value.as_ref().map_or(0, |m| m.amount_minor);
            let real = t.intrinsic_value.as_ref().map_or(0, |m| m.amount_minor);
            let same_currency = item.intrinsic_value.as_ref().map(|m| &m.currency)
                == t.intrinsic_value.as_ref().map(|m| &m.currency);
            let undervalued = same_currency && (declared as f64) < 0.7 * real as f64;
            let misdescribed = !t.description.is_empty() && item.description != t.description;
            let misclassified = item.hs6 != t.hs6;
            (undervalued || misdescribed || misclassified).then(|| pb::ItemFinding {
                goods_item_number: item.goods_item_number,
                undervalued,
                corrected_intrinsic_value: if undervalued {
                    t.intrinsic_value.clone()
                } else {
                    None
                },
                misdescribed,
                corrected_description: if misdescribed {
                    t.description.clone()
                } else {
                    String::new()
                },
                corrected_hs6: if misclassified {
                    t.hs6.clone()
                } else {
                    String::new()
                },
            })
        })
        .collect();
    let fraud = !truth.fraud_kinds.is_empty();
    Some(pb::InspectionResult {
        declaration_id: d.declaration_id.clone(),
        inspection_id,
        selection_reason: selection_reason as i32,
        control_type: control_type as i32,
        outcome: if fraud {
            pb::InspectionOutcome::NonCompliant
        } else {
            pb::InspectionOutcome::Compliant
        } as i32,
        fraud_kinds: truth.fraud_kinds.clone(),
        findings: if fraud { findings } else { Vec::new() },
        inspected_at: Some(crate::wire::declaration::timestamp_to_pb(inspected_at)),
        officer_notes: String::new(),
    })
}
