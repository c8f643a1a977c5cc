//! The simulated world: sellers, buyers, declarants, drop addresses and leaked
//! IOSS numbers, drawn once from the seed.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::catalog::CATEGORIES;
use crate::pb;

pub struct Seller {
    pub party: pb::Party,
    pub country: String,
    /// Empty when the seller is not registered for IOSS.
    pub ioss_number: String,
    /// Multiplies every fraud rate; volume-weighted mean 1.
    pub fraud_multiplier: f64,
    pub rogue: bool,
    /// Known to the legacy rules (imperfectly: some honest sellers too).
    pub watch_listed: bool,
    /// Category indices the seller mostly ships.
    pub specialties: Vec<usize>,
    pub platform: &'static str,
}

pub struct Buyer {
    pub party: pb::Party,
}

pub struct Population {
    pub sellers: Vec<Seller>,
    /// Cumulative volume weights of sellers (long tail).
    seller_cdf: Vec<f64>,
    pub buyers: Vec<Buyer>,
    pub declarants: Vec<pb::Party>,
    pub drop_addresses: Vec<pb::Address>,
    pub leaked_ioss: Vec<String>,
    category_cdf: Vec<f64>,
}

const CN_CITIES: &[&str] = &[
    "Shenzhen",
    "Guangzhou",
    "Yiwu",
    "Dongguan",
    "Hangzhou",
    "Ningbo",
    "Xiamen",
    "Shanghai",
    "Foshan",
    "Quanzhou",
];
const NAME_PARTS: &[&str] = &[
    "Xinda", "Huamei", "Jiale", "Boyuan", "Tianhong", "Ruixiang", "Kaida", "Mingtai", "Haoyu",
    "Lianfa", "Jinsheng", "Yongxin", "Hengtai", "Shunfa", "Baolong", "Zhongke",
];
const COMPANY_KINDS: &[&str] = &[
    "Trading",
    "Technology",
    "E-commerce",
    "Import & Export",
    "Industrial",
    "Network Technology",
];
const PLATFORMS: &[&str] = &[
    "marketplace_a",
    "marketplace_b",
    "marketplace_c",
    "own_webshop",
];
const FIRST_NAMES: &[&str] = &[
    "Marie", "Lucas", "Emma", "Noah", "Julie", "Thomas", "Sarah", "Louis", "Laura", "Jan",
    "Sophie", "Lukas", "Anna", "Maxime", "Lea", "Pieter", "Ines", "Hugo", "Mila", "Elias", "Chloe",
    "Finn", "Nora", "Arthur",
];
const LAST_NAMES: &[&str] = &[
    "Peeters",
    "Janssens",
    "Maes",
    "Dubois",
    "Martin",
    "Bernard",
    "Muller",
    "Schmidt",
    "Schneider",
    "de Jong",
    "Jansen",
    "Visser",
    "Lambert",
    "Dupont",
    "Fischer",
    "Weber",
    "Leroy",
    "Claes",
    "Wouters",
    "Meyer",
    "Bakker",
    "Moreau",
    "Laurent",
    "Simon",
];
const STREETS: &[&str] = &[
    "Rue de la Station",
    "Kerkstraat",
    "Hauptstrasse",
    "Rue du Moulin",
    "Dorpsstraat",
    "Bahnhofstrasse",
    "Avenue des Tilleuls",
    "Stationsstraat",
    "Rue Haute",
    "Schulstrasse",
    "Molenstraat",
    "Rue de Paris",
];

/// (country, share, cities, postcode digits)
const EU_COUNTRIES: &[(&str, f64, &[&str], u32)] = &[
    (
        "BE",
        0.22,
        &[
            "Liege",
            "Brussels",
            "Antwerpen",
            "Gent",
            "Namur",
            "Charleroi",
        ],
        4,
    ),
    (
        "FR",
        0.25,
        &["Paris", "Lyon", "Lille", "Marseille", "Toulouse", "Nantes"],
        5,
    ),
    (
        "DE",
        0.20,
        &[
            "Berlin",
            "Koeln",
            "Hamburg",
            "Muenchen",
            "Aachen",
            "Frankfurt",
        ],
        5,
    ),
    (
        "NL",
        0.15,
        &[
            "Amsterdam",
            "Rotterdam",
            "Utrecht",
            "Eindhoven",
            "Maastricht",
        ],
        4,
    ),
    ("IT", 0.06, &["Milano", "Roma", "Torino"], 5),
    ("ES", 0.05, &["Madrid", "Barcelona", "Valencia"], 5),
    ("PL", 0.04, &["Warszawa", "Krakow"], 5),
    ("LU", 0.03, &["Luxembourg", "Esch-sur-Alzette"], 4),
];

fn pick<'a, T>(rng: &mut SmallRng, list: &'a [T]) -> &'a T {
    &list[rng.gen_range(0..list.len())]
}

fn eu_address(rng: &mut SmallRng) -> pb::Address {
    let roll: f64 = rng.r#gen();
    let mut acc = 0.0;
    let mut chosen = EU_COUNTRIES[0];
    for entry in EU_COUNTRIES {
        acc += entry.1;
        if roll < acc {
            chosen = *entry;
            break;
        }
        chosen = *entry;
    }
    let (country, _, cities, digits) = chosen;
    let postcode = rng.gen_range(10u32.pow(digits - 1)..10u32.pow(digits));
    pb::Address {
        street_and_number: format!("{} {}", pick(rng, STREETS), rng.gen_range(1..250)),
        postcode: postcode.to_string(),
        city: (*pick(rng, cities)).to_owned(),
        country: country.to_owned(),
    }
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

fn sample_cdf(rng: &mut SmallRng, cdf: &[f64]) -> usize {
    let total = *cdf.last().expect("non-empty distribution");
    let x = rng.r#gen::<f64>() * total;
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

impl Population {
    pub fn new(seed: u64, parcels: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED_0FC0_FFEE);
        let seller_count = (parcels / 150).clamp(300, 50_000) as usize;
        let buyer_count = (parcels * 2 / 5).clamp(500, 2_000_000) as usize;

        let category_cdf = cumulative(CATEGORIES.iter().map(|c| c.weight));
        // Long tail of sellers: Zipf-like volumes.
        let volumes: Vec<f64> = (0..seller_count)
            .map(|r| 1.0 / ((r + 1) as f64).powf(1.05))
            .collect();
        let seller_cdf = cumulative(volumes.iter().copied());
        let mut rogue_flags: Vec<bool> = (0..seller_count).map(|i| i % 100 < 8).collect();
        rogue_flags.shuffle(&mut rng);
        let total_volume: f64 = volumes.iter().sum();
        let rogue_volume: f64 = volumes
            .iter()
            .zip(&rogue_flags)
            .filter(|(_, r)| **r)
            .map(|(v, _)| v)
            .sum::<f64>()
            / total_volume;
        // Honest sellers still commit some fraud; rogue ones carry the rest so
        // that the configured rates hold on average.
        let honest_multiplier = 0.25;
        let rogue_multiplier =
            ((1.0 - (1.0 - rogue_volume) * honest_multiplier) / rogue_volume.max(1e-6)).min(12.0);

        let tail_volume: f64 = volumes.iter().skip(20).sum::<f64>() / total_volume;
        let non_cn_chance = (0.09 / tail_volume).min(1.0);
        let no_ioss_chance = (0.07 / tail_volume).min(1.0);
        let mut sellers = Vec::with_capacity(seller_count);
        for (index, rogue) in rogue_flags.into_iter().enumerate() {
            // Countries by volume: about 91 % of parcels come from China. The
            // biggest sellers are Chinese; the rest get a share that makes the
            // volume-weighted figure come out right.
            let country = if index >= 20 && rng.gen_bool(non_cn_chance) {
                *pick(&mut rng, &["HK", "HK", "HK", "TR", "US", "US", "SG", "GB"])
            } else {
                "CN"
            };
            let city = if country == "CN" {
                (*pick(&mut rng, CN_CITIES)).to_owned()
            } else {
                format!("{country} City")
            };
            let name = format!(
                "{} {} {} Co., Ltd {}",
                city,
                pick(&mut rng, NAME_PARTS),
                pick(&mut rng, COMPANY_KINDS),
                index
            );
            // About 93 % of parcels go under IOSS; as with countries, the big
            // sellers are registered and the tail makes up the rest.
            let ioss_number = if index < 20 || !rng.gen_bool(no_ioss_chance) {
                format!("IM{:010}", rng.gen_range(1_560_000_000u64..1_569_999_999))
            } else {
                String::new()
            };
            let specialties = (0..rng.gen_range(1..=3))
                .map(|_| sample_cdf(&mut rng, &category_cdf))
                .collect();
            sellers.push(Seller {
                party: pb::Party {
                    name,
                    identification_number: String::new(),
                    address: Some(pb::Address {
                        street_and_number: format!(
                            "No. {} {} Road",
                            rng.gen_range(1..999),
                            pick(&mut rng, NAME_PARTS)
                        ),
                        postcode: format!("{}", rng.gen_range(100_000..999_999)),
                        city,
                        country: country.to_owned(),
                    }),
                    phone: format!("+86{}", rng.gen_range(13_000_000_000u64..19_999_999_999)),
                    email: String::new(),
                },
                country: country.to_owned(),
                ioss_number,
                fraud_multiplier: if rogue {
                    rogue_multiplier
                } else {
                    honest_multiplier
                },
                rogue,
                watch_listed: rng.gen_bool(if rogue { 0.35 } else { 0.02 }),
                specialties,
                platform: PLATFORMS[rng.gen_range(0..PLATFORMS.len())],
            });
        }

        let buyers = (0..buyer_count)
            .map(|_| {
                let name = format!(
                    "{} {}",
                    pick(&mut rng, FIRST_NAMES),
                    pick(&mut rng, LAST_NAMES)
                );
                Buyer {
                    party: pb::Party {
                        name,
                        identification_number: String::new(),
                        address: Some(eu_address(&mut rng)),
                        phone: String::new(),
                        email: String::new(),
                    },
                }
            })
            .collect();

        let declarants = [
            ("Meuse Express Hub SA", "BE0400000101"),
            ("EuroParcel Logistics NV", "BE0400000202"),
            ("Skyline Courier Belgium SRL", "BE0400000303"),
            ("Postal Operator Liege", "BE0400000404"),
            ("Bierset Customs Brokers SA", "BE0400000505"),
            ("Ardennes Forwarding NV", "BE0400000606"),
        ]
        .iter()
        .map(|(name, eori)| pb::Party {
            name: (*name).to_owned(),
            identification_number: (*eori).to_owned(),
            address: Some(pb::Address {
                street_and_number: "Rue de l'Aeroport 1".into(),
                postcode: "4460".into(),
                city: "Grace-Hollogne".into(),
                country: "BE".into(),
            }),
            phone: String::new(),
            email: String::new(),
        })
        .collect();

        let drop_addresses = (0..40).map(|_| eu_address(&mut rng)).collect();
        let with_ioss: Vec<&Seller> = sellers
            .iter()
            .filter(|s| !s.ioss_number.is_empty())
            .collect();
        let leaked_ioss = (0..20)
            .map(|_| pick(&mut rng, &with_ioss).ioss_number.clone())
            .collect();

        Self {
            sellers,
            seller_cdf,
            buyers,
            declarants,
            drop_addresses,
            leaked_ioss,
            category_cdf,
        }
    }

    pub fn sample_seller(&self, rng: &mut SmallRng) -> usize {
        sample_cdf(rng, &self.seller_cdf)
    }

    /// Repeat buyers: a fifth of the buyers place a third of the orders.
    pub fn sample_buyer(&self, rng: &mut SmallRng) -> usize {
        let n = self.buyers.len();
        if rng.gen_bool(0.33) {
            rng.gen_range(0..(n / 5).max(1))
        } else {
            rng.gen_range(0..n)
        }
    }

    pub fn sample_category(&self, rng: &mut SmallRng) -> usize {
        sample_cdf(rng, &self.category_cdf)
    }

    pub fn random_person_name(&self, rng: &mut SmallRng) -> String {
        format!("{} {}", pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES))
    }
}
