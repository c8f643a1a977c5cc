//! Fixtures shared by the integration tests.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parcel_risk::domain::TrainingExample;
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::model::train::{TrainParams, train};
use parcel_risk::model::{ClassifierKind, ModelArtifact};

use parcel_risk::pb;

pub fn traffic(parcels: u64, seed: u64) -> Vec<TrainingExample> {
    let generator = Generator::new(GeneratorConfig {
        parcels,
        seed,
        days: 4,
        // Plenty of labels so that a small file trains.
        rule_inspection_rate: 0.15,
        random_inspection_rate: 0.05,
        ..GeneratorConfig::default()
    })
    .unwrap();
    (0..generator.chunk_count())
        .flat_map(|c| generator.chunk(c).0)
        .map(|e| TrainingExample::try_from(e).unwrap())
        .collect()
}

/// One small model shared by the tests of this module.
pub fn trained() -> &'static (Arc<ModelArtifact>, Vec<TrainingExample>) {
    static MODEL: OnceLock<(Arc<ModelArtifact>, Vec<TrainingExample>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let examples = traffic(6_000, 21);
        let params = TrainParams {
            candidates: vec![
                ClassifierKind::Logistic,
                ClassifierKind::GaussianNb,
                ClassifierKind::DecisionTree,
            ],
            ..TrainParams::default()
        };
        let artifact = train(examples.clone(), &params, "test", "test-model".into()).unwrap();
        (Arc::new(artifact), examples)
    })
}

pub fn ts(seconds: i64) -> Option<pbjson_types::Timestamp> {
    Some(pbjson_types::Timestamp { seconds, nanos: 0 })
}

pub fn money(currency: &str, amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: currency.into(),
        amount_minor,
    })
}

pub fn party(name: &str, country: &str) -> Option<pb::Party> {
    Some(pb::Party {
        name: name.into(),
        identification_number: String::new(),
        address: Some(pb::Address {
            street_and_number: "Kerkstraat 1".into(),
            postcode: "4000".into(),
            city: "Liege".into(),
            country: country.into(),
        }),
        phone: String::new(),
        email: String::new(),
    })
}

/// A declaration that uses every field of the contract.
pub fn full_declaration(id: &str) -> pb::Declaration {
    let mut attributes = HashMap::new();
    attributes.insert("platform".into(), "marketplace_a".into());
    attributes.insert("payment_method".into(), "card, \"quoted\"; semi".into());
    pb::Declaration {
        declaration_id: id.into(),
        lrn: "LRN0001".into(),
        mrn: "26BEH7000000000001".into(),
        dataset: pb::DatasetType::H7 as i32,
        additional_declaration_type: "A".into(),
        lodged_at: Some(pbjson_types::Timestamp {
            seconds: 1_788_000_000,
            nanos: 123_000_000,
        }),
        ucr: "ORDER-42".into(),
        exporter: Some(pb::Party {
            name: "Shenzhen Example Trading Co., Ltd".into(),
            identification_number: "CN1234".into(),
            address: Some(pb::Address {
                street_and_number: "No. 1, Road \"A\"".into(),
                postcode: "518000".into(),
                city: "Shenzhen".into(),
                country: "CN".into(),
            }),
            phone: "+8613800000000".into(),
            email: "seller@example.cn".into(),
        }),
        importer: party("Marie Peeters", "BE"),
        declarant: Some(pb::Party {
            name: "Meuse Express Hub SA".into(),
            identification_number: "BE0400000101".into(),
            address: None,
            phone: String::new(),
            email: String::new(),
        }),
        ioss_number: "IM1234567890".into(),
        transport_documents: vec![
            pb::TransportDocument {
                kind: pb::TransportDocumentKind::HouseAwb as i32,
                reference: "H123".into(),
            },
            pb::TransportDocument {
                kind: pb::TransportDocumentKind::MasterAwb as i32,
                reference: "176-12345675".into(),
            },
        ],
        location_of_goods: "BELGG".into(),
        carrier_channel: pb::CarrierChannel::Express as i32,
        flight_number: "CA1041".into(),
        arrival_at: ts(1_788_003_600),
        transport_and_insurance_costs: money("EUR", 250),
        items: vec![
            pb::GoodsItem {
                goods_item_number: 1,
                description: "Phone case, silicone\nblack".into(),
                hs6: "392690".into(),
                intrinsic_value: money("CNY", 2999),
                gross_mass_g: 40,
                quantity: 2,
                additional_procedure_codes: vec!["C07".into(), "F48".into()],
                country_of_origin: "CN".into(),
            },
            pb::GoodsItem {
                goods_item_number: 2,
                description: "Gift".into(),
                // HS 2017 code: well formed, not in HS 2022.
                hs6: "851712".into(),
                intrinsic_value: money("KRW", 15000),
                gross_mass_g: 420,
                quantity: 0,
                additional_procedure_codes: vec!["C07".into(), "F48".into()],
                country_of_origin: String::new(),
            },
        ],
        ens: Some(pb::EnsHouseConsignment {
            ens_mrn: "26BE00000000000001".into(),
            consignor: party("Shenzhen Example", "CN"),
            consignee: party("Marie Peeters", "BE"),
            total_gross_mass_g: 460,
            description: "phone case".into(),
            country_of_origin: "CN".into(),
        }),
        attributes,
    }
}

/// A training example with a result (a finding on item 2) and the truth.
pub fn full_example(id: &str) -> pb::TrainingExample {
    let kinds = vec![
        pb::FraudKind::Undervaluation as i32,
        pb::FraudKind::Misdescription as i32,
    ];
    pb::TrainingExample {
        declaration: Some(full_declaration(id)),
        result: Some(pb::InspectionResult {
            declaration_id: id.into(),
            inspection_id: format!("I-{id}"),
            selection_reason: pb::SelectionReason::Random as i32,
            control_type: pb::Channel::Red as i32,
            outcome: pb::InspectionOutcome::NonCompliant as i32,
            fraud_kinds: kinds.clone(),
            findings: vec![pb::ItemFinding {
                goods_item_number: 2,
                undervalued: true,
                corrected_intrinsic_value: money("KRW", 250000),
                misdescribed: true,
                corrected_description: "Smartphone".into(),
                corrected_hs6: "851713".into(),
            }],
            inspected_at: ts(1_788_010_000),
            officer_notes: "opened; phone inside".into(),
        }),
        truth: Some(pb::GroundTruth {
            fraud_kinds: kinds,
            items: vec![
                pb::ItemTruth {
                    goods_item_number: 1,
                    hs6: "392690".into(),
                    description: "Phone case, silicone\nblack".into(),
                    intrinsic_value: money("CNY", 2999),
                },
                pb::ItemTruth {
                    goods_item_number: 2,
                    hs6: "851713".into(),
                    description: "Smartphone".into(),
                    intrinsic_value: money("KRW", 250000),
                },
            ],
            seller_profile: "rogue".into(),
        }),
    }
}

/// `GET /metrics` over `stream` (plaintext or TLS), the whole answer.
pub async fn get_metrics<S>(stream: &mut S) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A server that closes without a TLS close_notify still gave its answer.
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}
