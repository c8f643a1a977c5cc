//! The goods the simulation ships: HS6 categories typical of China → EU B2C
//! parcels with price, mass and duty ranges (domain research §4.2), and the
//! cover stories fraudsters use for each.
//!
//! Prices and masses are per article and are generator assumptions calibrated
//! so that the mean item value stays under EUR 9, the Commission's figure.

/// One category of goods.
#[derive(Debug)]
pub struct Category {
    pub hs6: &'static str,
    /// Listing texts as sellers write them.
    pub descriptions: &'static [&'static str],
    /// Typical retail price per article, EUR (about the 5th and 95th percentile).
    pub price_eur: (f64, f64),
    /// Gross mass per article incl. retail packaging, kg.
    pub mass_kg: (f64, f64),
    /// Relative share of articles.
    pub weight: f64,
    /// EU MFN ad-valorem duty, percent.
    pub duty_pct: f64,
    /// A lower-duty sub-heading fraudsters declare instead (misclassification).
    pub lower_duty_hs6: Option<&'static str>,
    /// Other categories whose name hides this one (misdescription), by HS6.
    pub covers: &'static [&'static str],
}

pub const CATEGORIES: &[Category] = &[
    Category {
        hs6: "392690",
        descriptions: &[
            "Phone case silicone",
            "TPU phone cover",
            "Plastic phone case shockproof",
            "Clear phone case",
        ],
        price_eur: (0.5, 5.0),
        mass_kg: (0.02, 0.06),
        weight: 10.0,
        duty_pct: 6.5,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "610910",
        descriptions: &[
            "Cotton T-shirt",
            "Men's cotton t-shirt short sleeve",
            "Women's cotton tee",
            "Graphic T-shirt cotton",
        ],
        price_eur: (2.0, 12.0),
        mass_kg: (0.12, 0.25),
        weight: 8.0,
        duty_pct: 12.0,
        lower_duty_hs6: Some("630790"),
        covers: &[],
    },
    Category {
        hs6: "610990",
        descriptions: &[
            "Polyester T-shirt",
            "Sports t-shirt quick dry",
            "Synthetic tank top",
        ],
        price_eur: (2.0, 10.0),
        mass_kg: (0.1, 0.2),
        weight: 5.0,
        duty_pct: 12.0,
        lower_duty_hs6: Some("630790"),
        covers: &[],
    },
    Category {
        hs6: "610510",
        descriptions: &["Men's knitted cotton polo shirt", "Cotton polo shirt"],
        price_eur: (5.0, 15.0),
        mass_kg: (0.2, 0.3),
        weight: 2.0,
        duty_pct: 12.0,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "620462",
        descriptions: &[
            "Women's cotton trousers",
            "Cotton jeans women",
            "Wide leg cotton pants",
        ],
        price_eur: (5.0, 25.0),
        mass_kg: (0.2, 0.5),
        weight: 3.0,
        duty_pct: 12.0,
        lower_duty_hs6: Some("630790"),
        covers: &[],
    },
    Category {
        hs6: "610443",
        descriptions: &[
            "Women's knitted dress polyester",
            "Summer dress synthetic",
            "Bodycon dress",
        ],
        price_eur: (5.0, 25.0),
        mass_kg: (0.15, 0.4),
        weight: 3.0,
        duty_pct: 12.0,
        lower_duty_hs6: Some("630790"),
        covers: &[],
    },
    Category {
        hs6: "611595",
        descriptions: &["Cotton socks 5 pairs", "Ankle socks cotton", "Sport socks"],
        price_eur: (1.0, 6.0),
        mass_kg: (0.03, 0.1),
        weight: 2.0,
        duty_pct: 12.0,
        lower_duty_hs6: Some("630790"),
        covers: &[],
    },
    Category {
        hs6: "640411",
        descriptions: &[
            "Running shoes textile upper",
            "Sneakers men mesh",
            "Training shoes rubber sole",
            "Basketball shoes",
        ],
        price_eur: (10.0, 40.0),
        mass_kg: (0.6, 1.1),
        weight: 2.0,
        duty_pct: 16.9,
        lower_duty_hs6: Some("640520"),
        covers: &["611595", "640219"],
    },
    Category {
        hs6: "640219",
        descriptions: &["Rubber slides", "EVA sandals", "Plastic flip flops"],
        price_eur: (3.0, 20.0),
        mass_kg: (0.3, 0.8),
        weight: 2.0,
        duty_pct: 16.9,
        lower_duty_hs6: Some("640590"),
        covers: &[],
    },
    Category {
        hs6: "640319",
        descriptions: &["Leather shoes men", "Leather ankle boots"],
        price_eur: (20.0, 60.0),
        mass_kg: (0.8, 1.3),
        weight: 0.5,
        duty_pct: 8.0,
        lower_duty_hs6: None,
        covers: &["611595"],
    },
    Category {
        hs6: "950300",
        descriptions: &[
            "Plastic building blocks set",
            "Plush toy",
            "RC car toy",
            "Doll with accessories",
            "Puzzle 1000 pieces",
        ],
        price_eur: (1.0, 20.0),
        mass_kg: (0.05, 0.8),
        weight: 10.0,
        duty_pct: 4.7,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "330499",
        descriptions: &[
            "Face cream moisturizing",
            "Skin care serum",
            "Sunscreen lotion",
            "Face mask sheets",
        ],
        price_eur: (1.0, 15.0),
        mass_kg: (0.02, 0.25),
        weight: 6.0,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "330420",
        descriptions: &["Eyeliner pencil", "Mascara waterproof", "Eyeshadow palette"],
        price_eur: (1.0, 10.0),
        mass_kg: (0.01, 0.05),
        weight: 4.0,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "961310",
        descriptions: &[
            "Disposable gas lighter",
            "Pocket lighter",
            "Gas lighters 5 pcs",
        ],
        price_eur: (0.3, 5.0),
        mass_kg: (0.015, 0.06),
        weight: 1.5,
        duty_pct: 2.7,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "711719",
        descriptions: &[
            "Fashion necklace alloy",
            "Stainless steel bracelet",
            "Earrings set base metal",
            "Costume jewellery ring",
        ],
        price_eur: (0.5, 8.0),
        mass_kg: (0.005, 0.05),
        weight: 10.0,
        duty_pct: 4.0,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "910211",
        descriptions: &[
            "Quartz wrist watch",
            "Men's analog watch",
            "Women's fashion watch",
        ],
        price_eur: (3.0, 30.0),
        mass_kg: (0.04, 0.15),
        weight: 2.0,
        duty_pct: 4.5,
        lower_duty_hs6: None,
        covers: &["711719"],
    },
    Category {
        hs6: "420222",
        descriptions: &[
            "Women's handbag PU",
            "Canvas tote bag",
            "Shoulder bag textile",
        ],
        price_eur: (5.0, 40.0),
        mass_kg: (0.2, 0.8),
        weight: 3.0,
        duty_pct: 9.7,
        lower_duty_hs6: Some("420292"),
        covers: &["630790"],
    },
    Category {
        hs6: "420212",
        descriptions: &["Hard shell suitcase", "Cabin trolley case"],
        price_eur: (15.0, 60.0),
        mass_kg: (2.0, 4.0),
        weight: 0.2,
        duty_pct: 9.7,
        lower_duty_hs6: Some("420292"),
        covers: &[],
    },
    Category {
        hs6: "900410",
        descriptions: &[
            "Polarized sunglasses",
            "Fashion sunglasses UV400",
            "Sports sunglasses",
        ],
        price_eur: (1.0, 10.0),
        mass_kg: (0.02, 0.05),
        weight: 3.0,
        duty_pct: 2.9,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "851830",
        descriptions: &[
            "Bluetooth earbuds",
            "Wireless headphones",
            "TWS earphones with charging case",
        ],
        price_eur: (3.0, 30.0),
        mass_kg: (0.04, 0.1),
        weight: 4.0,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &["950300", "392690"],
    },
    Category {
        hs6: "851762",
        descriptions: &[
            "Smart watch fitness tracker",
            "Smart band heart rate",
            "Bluetooth smartwatch",
        ],
        price_eur: (8.0, 40.0),
        mass_kg: (0.04, 0.1),
        weight: 1.5,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &["711719", "950300"],
    },
    Category {
        hs6: "850440",
        descriptions: &["USB charger 20W", "Fast charger USB-C", "Power adapter"],
        price_eur: (2.0, 15.0),
        mass_kg: (0.03, 0.12),
        weight: 5.0,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "850760",
        descriptions: &[
            "Power bank 10000mAh",
            "Portable charger power bank",
            "Li-ion battery pack",
        ],
        price_eur: (8.0, 30.0),
        mass_kg: (0.15, 0.4),
        weight: 2.0,
        duty_pct: 2.7,
        lower_duty_hs6: Some("850440"),
        covers: &["392690"],
    },
    Category {
        hs6: "851713",
        descriptions: &[
            "Smartphone 128GB",
            "Android mobile phone 6.5 inch",
            "5G smartphone dual SIM",
        ],
        price_eur: (60.0, 400.0),
        mass_kg: (0.35, 0.6),
        weight: 0.15,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &["392690", "961310", "950300"],
    },
    Category {
        hs6: "847130",
        descriptions: &["Laptop 15.6 inch", "Notebook computer 14 inch"],
        price_eur: (150.0, 800.0),
        mass_kg: (1.0, 2.2),
        weight: 0.02,
        duty_pct: 0.0,
        lower_duty_hs6: None,
        covers: &["392410"],
    },
    Category {
        hs6: "392410",
        descriptions: &[
            "Plastic food container set",
            "Silicone kitchen utensils",
            "Plastic storage box",
        ],
        price_eur: (1.0, 10.0),
        mass_kg: (0.05, 0.3),
        weight: 5.0,
        duty_pct: 6.5,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "630790",
        descriptions: &[
            "Reusable face masks",
            "Textile storage bag",
            "Microfiber cleaning cloths",
        ],
        price_eur: (0.5, 6.0),
        mass_kg: (0.01, 0.1),
        weight: 3.0,
        duty_pct: 6.3,
        lower_duty_hs6: None,
        covers: &[],
    },
    Category {
        hs6: "650500",
        descriptions: &["Knitted beanie hat", "Baseball cap cotton", "Bucket hat"],
        price_eur: (2.0, 12.0),
        mass_kg: (0.05, 0.15),
        weight: 2.0,
        duty_pct: 2.7,
        lower_duty_hs6: None,
        covers: &[],
    },
];

/// Generic terms of the ICS2 stop-word list that fraudsters write instead of
/// the goods.
pub const VAGUE_DESCRIPTIONS: &[&str] = &[
    "Gift",
    "Accessories",
    "Parts",
    "Sample",
    "Birthday gift",
    "Electronics",
    "Clothing",
    "Goods",
    "Household goods",
    "Spare parts",
];

/// The index of the category with this HS6.
pub fn index_of(hs6: &str) -> Option<usize> {
    CATEGORIES.iter().position(|c| c.hs6 == hs6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Hs6, Nomenclature};

    #[test]
    fn every_code_is_in_the_nomenclature_and_covers_exist() {
        let hs = Nomenclature::built_in();
        for c in CATEGORIES {
            assert!(hs.contains(Hs6::parse(c.hs6).unwrap()), "{}", c.hs6);
            if let Some(lower) = c.lower_duty_hs6 {
                assert!(hs.contains(Hs6::parse(lower).unwrap()), "{lower}");
            }
            for cover in c.covers {
                assert!(index_of(cover).is_some(), "cover {cover} of {}", c.hs6);
            }
            assert!(c.price_eur.0 < c.price_eur.1 && c.mass_kg.0 < c.mass_kg.1);
        }
    }
}
