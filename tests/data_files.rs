//! Data files: lossless round trips through JSONL and CSV, bad records
//! reported by line while the rest is read.

use std::io::Cursor;

use parcel_risk::domain::{ReferenceData, TrainingExample};
use parcel_risk::generate::{Generator, GeneratorConfig};
use parcel_risk::io::columnar::ColumnarWriter;
use parcel_risk::io::csv::CsvWriter;
use parcel_risk::io::jsonl::JsonlWriter;
use parcel_risk::io::{ExampleReader, Format, Projection, RecordError};
use parcel_risk::pb;
use proptest::prelude::*;

use crate::common::{full_declaration, full_example};

fn read_all(bytes: &[u8], format: Format) -> Vec<Result<(u64, TrainingExample), RecordError>> {
    read_with(bytes, format, Projection::Examples)
}

fn read_with(
    bytes: &[u8],
    format: Format,
    projection: Projection,
) -> Vec<Result<(u64, TrainingExample), RecordError>> {
    ExampleReader::new(
        Cursor::new(bytes),
        format,
        projection,
        ReferenceData::built_in(),
    )
    .map(|item| item.expect("no I/O error on an in-memory file"))
    .collect()
}

fn write_all(examples: &[TrainingExample], format: Format) -> Vec<u8> {
    let wire: Vec<pb::TrainingExample> = examples.iter().map(pb::TrainingExample::from).collect();
    write_all_pb(&wire, format)
}

const ALL_FORMATS: [Format; 4] = [Format::Jsonl, Format::Csv, Format::Parquet, Format::Arrow];

fn generated(parcels: u64, seed: u64) -> Vec<TrainingExample> {
    let generator = Generator::new(GeneratorConfig {
        parcels,
        seed,
        ..GeneratorConfig::default()
    })
    .unwrap();
    (0..generator.chunk_count())
        .flat_map(|c| generator.chunk(c).0)
        .map(|e| TrainingExample::try_from(e).expect("generated traffic is valid"))
        .collect()
}

#[test]
fn full_example_survives_proto_domain_proto() {
    let wire = full_example("D1");
    let domain = TrainingExample::try_from(wire.clone()).unwrap();
    assert_eq!(pb::TrainingExample::from(&domain), wire);
}

#[test]
fn full_example_round_trips_through_jsonl_and_csv() {
    let domain = TrainingExample::try_from(full_example("D1")).unwrap();
    let bare = TrainingExample {
        declaration: parcel_risk::domain::Declaration::try_from(full_declaration("D2")).unwrap(),
        result: None,
        truth: None,
    };
    let examples = vec![domain, bare];
    for format in ALL_FORMATS {
        let bytes = write_all(&examples, format);
        let back: Vec<TrainingExample> = read_all(&bytes, format)
            .into_iter()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(back, examples, "{format:?}");
    }
}

#[test]
fn generated_traffic_round_trips_through_every_format() {
    let examples = generated(3_000, 11);
    assert_eq!(examples.len(), 3_000);
    for format in ALL_FORMATS {
        let bytes = write_all(&examples, format);
        let back: Vec<TrainingExample> = read_all(&bytes, format)
            .into_iter()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(back.len(), examples.len());
        assert!(back == examples, "{format:?} round trip changed a record");
    }
}

/// Rescoring reads each record's declaration alone: a result or a ground
/// truth that fails validation rejects its record when examples are read,
/// in every format, and not when declarations are, which read the same
/// declarations without result or truth.
#[test]
fn declarations_are_read_without_their_results_and_truth_in_every_format() {
    let examples = generated(60, 21);
    let mut wire: Vec<pb::TrainingExample> =
        examples.iter().map(pb::TrainingExample::from).collect();
    // A result without an outcome, and a ground truth naming no sub-heading.
    let inspected = pb::InspectionResult {
        declaration_id: wire[3].declaration.as_ref().unwrap().declaration_id.clone(),
        inspection_id: "I-1".into(),
        control_type: pb::Channel::Red.into(),
        outcome: pb::InspectionOutcome::Unspecified.into(),
        ..Default::default()
    };
    wire[3].result = Some(inspected);
    let truth = wire[7].truth.as_mut().expect("generated traffic has truth");
    truth.items[0].hs6 = "9".into();
    for format in ALL_FORMATS {
        let bytes = write_all_pb(&wire, format);
        let as_examples = read_with(&bytes, format, Projection::Examples);
        let rejected: Vec<usize> = (as_examples.iter().enumerate())
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(rejected, [3, 7], "{format:?}: {:?}", as_examples[3]);
        let as_declarations = read_with(&bytes, format, Projection::Declarations);
        assert_eq!(as_declarations.len(), examples.len(), "{format:?}");
        for (read, example) in as_declarations.into_iter().zip(&examples) {
            let (_, read) = read.unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert!(read.declaration == example.declaration, "{format:?}");
            assert!(read.result.is_none() && read.truth.is_none(), "{format:?}");
        }
    }
}

/// Wire messages written to a file, each format.
fn write_all_pb(examples: &[pb::TrainingExample], format: Format) -> Vec<u8> {
    match format {
        Format::Jsonl => {
            let mut w = JsonlWriter::new(Vec::new());
            for e in examples {
                w.write_pb(e).unwrap();
            }
            w.into_inner()
        }
        Format::Csv => {
            let mut w = CsvWriter::new(Vec::new()).unwrap();
            for e in examples {
                w.write_pb(e).unwrap();
            }
            w.into_inner().unwrap()
        }
        Format::Parquet | Format::Arrow => {
            let mut w = ColumnarWriter::new(Vec::new(), format.container().unwrap()).unwrap();
            for e in examples {
                w.write_pb(e).unwrap();
            }
            w.finish().unwrap()
        }
    }
}

/// Tabular files hand validation their cells' text in place, not a wire
/// message: every kind of violation must still come out as validating the
/// wire message gives it, field path and words alike, and a good record as
/// the same declaration.
fn seller_address(d: &mut pb::Declaration) -> &mut pb::Address {
    d.exporter.as_mut().unwrap().address.as_mut().unwrap()
}

#[test]
fn tabular_files_validate_as_the_wire_message_does() {
    type Mutation = fn(&mut pb::Declaration);
    let mutations: Vec<(&str, Mutation)> = vec![
        ("none", |_| ()),
        ("country", |d| seller_address(d).country = "C1".into()),
        ("street", |d| {
            seller_address(d).street_and_number = "s".repeat(71)
        }),
        ("hs6", |d| d.items[0].hs6 = "12".into()),
        ("mass", |d| d.items[0].gross_mass_g = -5),
        ("currency", |d| {
            d.items[0].intrinsic_value.as_mut().unwrap().currency = "ZZZ".into()
        }),
        ("amount", |d| {
            d.items[0].intrinsic_value.as_mut().unwrap().amount_minor = -1
        }),
        ("lrn", |d| d.lrn = "L".repeat(23)),
        ("blank lrn", |d| d.lrn = "  ".into()),
        ("attribute key", |d| {
            d.attributes.insert("Bad Key".into(), "x".into());
        }),
        ("attribute value", |d| {
            d.attributes.insert("note".into(), "v".repeat(257));
        }),
        ("unnamed party", |d| {
            let p = d.importer.as_mut().unwrap();
            p.name.clear();
            p.identification_number.clear();
        }),
        ("phone", |d| {
            d.importer.as_mut().unwrap().phone = "9".repeat(51)
        }),
        ("ioss", |d| d.ioss_number = "IM12".into()),
        ("no documents", |d| d.transport_documents.clear()),
        ("document", |d| {
            d.transport_documents[0].reference = " ".into()
        }),
        ("description", |d| d.items[0].description = "é".repeat(513)),
        ("procedure code", |d| {
            d.items[0].additional_procedure_codes = vec!["C07".into(), "c7".into()]
        }),
        ("item number", |d| d.items[0].goods_item_number = 0),
        ("origin", |d| d.items[0].country_of_origin = "Q".into()),
        ("ens", |d| {
            d.ens = Some(pb::EnsHouseConsignment {
                ens_mrn: "M".repeat(19),
                consignor: Some(pb::Party::default()),
                total_gross_mass_g: -1,
                description: "d".into(),
                country_of_origin: "X".into(),
                ..Default::default()
            })
        }),
        ("transport cost", |d| {
            d.transport_and_insurance_costs = Some(pb::Money {
                currency: "USD".into(),
                amount_minor: -3,
            })
        }),
    ];
    let base: Vec<pb::TrainingExample> = generated(60, 5)
        .iter()
        .map(pb::TrainingExample::from)
        .collect();
    let examples: Vec<pb::TrainingExample> = base
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            (mutations[i % mutations.len()].1)(e.declaration.as_mut().unwrap());
            e
        })
        .collect();
    let wanted: Vec<Result<TrainingExample, String>> = examples
        .iter()
        .map(|e| {
            parcel_risk::wire::training_example_from_pb(e.clone(), &ReferenceData::built_in())
                .map_err(|err| err.to_string())
        })
        .collect();
    assert!(wanted.iter().filter(|w| w.is_err()).count() > 40);
    for format in [Format::Csv, Format::Parquet, Format::Arrow] {
        let read = read_all(&write_all_pb(&examples, format), format);
        assert_eq!(read.len(), examples.len(), "{format:?}");
        for (i, (got, want)) in read.into_iter().zip(&wanted).enumerate() {
            let what = mutations[i % mutations.len()].0;
            match (got, want) {
                (Ok((_, got)), Ok(want)) => assert!(got == *want, "{format:?} {what}"),
                (Err(RecordError::Invalid { source, .. }), Err(want)) => {
                    assert_eq!(source.to_string(), *want, "{format:?} {what}")
                }
                (got, want) => panic!("{format:?} {what}: {got:?} against {want:?}"),
            }
        }
    }
}

/// JSON Lines are read into borrowed text first and, where that shape
/// refuses a line, as the wire message: every line, good or bad, must
/// decode as the wire message alone decodes it.
#[test]
fn jsonl_lines_decode_as_the_wire_message_does() {
    use parcel_risk::io::jsonl::{LineKind, decode_line, decode_wire_line};
    use parcel_risk::wire::raw::{JsonText, RawDeclaration, RawExample, direct};
    let reference = ReferenceData::built_in();
    let mut lines: Vec<(LineKind, String)> = Vec::new();
    let generated: Vec<pb::TrainingExample> = generated(150, 8)
        .iter()
        .map(pb::TrainingExample::from)
        .collect();
    for e in &generated {
        let example = serde_json::to_string(e).unwrap();
        let declaration = serde_json::to_string(e.declaration.as_ref().unwrap()).unwrap();
        // The common form is read by the fast shapes, not handed back.
        assert!(serde_json::from_str::<RawExample<'_>>(&example).is_ok());
        assert!(serde_json::from_str::<RawDeclaration<JsonText<'_>>>(&declaration).is_ok());
        assert!(direct::declaration(&declaration).is_some(), "{declaration}");
        let bare = format!("{{\"declaration\":{declaration}}}");
        assert!(direct::example(&bare).is_some(), "{bare}");
        assert!(direct::example(&example).is_some(), "{example}");
        lines.push((LineKind::Example, example));
        lines.push((LineKind::Declaration, declaration));
    }
    let full = serde_json::to_string(&full_declaration("E1")).unwrap();
    // Every field, in the form the direct reader takes (no escapes).
    let plain = full.replace(r#"\""#, "'").replace(r"\n", " ");
    assert!(direct::declaration(&plain).is_some(), "{plain}");
    let edited = |from: &str, to: &str| {
        assert!(plain.contains(from), "{from}");
        plain.replacen(from, to, 1)
    };
    // Keys out of the printers' order or under their original names are
    // read by the direct reader too, not handed on.
    let reordered = {
        let without = edited("\"lrn\":\"LRN0001\",", "");
        format!("{},\"lrn\":\"LRN0001\"}}", &without[..without.len() - 1])
    };
    let snake_case = plain
        .replace("declarationId", "declaration_id")
        .replace("streetAndNumber", "street_and_number")
        .replace("grossMassG", "gross_mass_g");
    assert!(direct::declaration(&reordered).is_some(), "{reordered}");
    assert!(direct::declaration(&snake_case).is_some(), "{snake_case}");
    let edges = vec![
        full.clone(),
        plain.clone(),
        full.replace("declarationId", "declaration_id")
            .replace("grossMassG", "gross_mass_g")
            .replace("amountMinor", "amount_minor")
            .replace("lodgedAt", "lodged_at"),
        edited("\"DATASET_TYPE_H7\"", "1"),
        edited("\"DATASET_TYPE_H7\"", "\"H7\""),
        edited("\"DATASET_TYPE_H7\"", "\"DATASET_TYPE_H9\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":null"),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"L\\u00e9\\n\\\"q\\\"\""),
        edited(
            "\"lrn\":\"LRN0001\"",
            "\"lrn\":\"LRN0001\",\"unknownField\":1",
        ),
        edited(
            "\"lrn\":\"LRN0001\"",
            "\"lrn\":\"LRN0001\",\"declaration_id\":\"X\"",
        ),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"LRN0001\",\"ens\":null"),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"LRN0001\",\"items\":null"),
        edited("\"amountMinor\":\"", "\"amountMinor\":\"-"),
        edited("\"amountMinor\":\"", "\"amountMinor\":\"1e3"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":\"1\""),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":1.5"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":0"),
        edited("\"lodgedAt\":\"", "\"lodgedAt\":\"x"),
        edited(
            "\"attributes\":{",
            "\"attributes\":{\"k\":\"1\",\"k\":\"2\",",
        ),
        edited("\"attributes\":{", "\"attributes\":{\"k\":5,"),
        edited("\"attributes\":{", "\"attributes\":{\"Bad Key\":\"v\","),
        edited("\"country\":\"CN\"", "\"country\":\"C1\""),
        edited("\"hs6\":\"", "\"hs6\":\"9"),
        // Edges where JSON parsers part ways (the fast shape is read by a
        // SIMD parser, the wire message by serde_json).
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"\\ud800\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"\\ud83d\\ude00 \\u0000\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"L\\x\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"L\u{1}\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"Liège 漢字\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\":\"A\",\"lrn\":\"B\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\" : \"LRN0001\" \t\r"),
        // Keys out of the printers' order, near misses of a known key (one
        // letter more or less, escaped, cut short), and whitespace before a
        // key.
        reordered,
        snake_case,
        edited("\"lrn\":\"LRN0001\"", "\"lrnx\":\"LRN0001\""),
        edited("\"lrn\":\"LRN0001\"", "\"lr\":\"LRN0001\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn\\u0078\":\"LRN0001\""),
        edited("\"lrn\":\"LRN0001\"", " \n\"lrn\":\"LRN0001\""),
        edited("\"lrn\":\"LRN0001\"", "\"lrn"),
        edited(
            "\"amountMinor\":\"",
            "\"amountMinor\":\"9223372036854775808",
        ),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":4294967297"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":1e400"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":-0"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":1.0"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":01"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":1."),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":true"),
        edited("\"goodsItemNumber\":1", "\"goodsItemNumber\":-1"),
        edited("\"grossMassG\":\"40\"", "\"grossMassG\":-180"),
        edited("\"grossMassG\":\"40\"", "\"grossMassG\":180"),
        edited("\"grossMassG\":\"40\"", "\"grossMassG\":\" 180\""),
        edited("\"grossMassG\":\"40\"", "\"grossMassG\":\"+180\""),
        edited(
            "\"grossMassG\":\"40\"",
            "\"grossMassG\":-9223372036854775808",
        ),
        edited(
            "\"grossMassG\":\"40\"",
            "\"grossMassG\":18446744073709551616",
        ),
        edited("\"grossMassG\":\"40\"", "\"grossMassG\":null"),
        format!("{full} trailing"),
        format!("{full} "),
        format!("{full},"),
        format!("{full}{{}}"),
        format!(" {full}"),
        "{}".to_owned(),
        "[]".to_owned(),
        "garbage".to_owned(),
        "{\"declaration\":{}}".to_owned(),
        "{\"declaration\":null,\"result\":null}".to_owned(),
    ];
    for text in edges {
        lines.push((LineKind::Example, format!("{{\"declaration\":{text}}}")));
        lines.push((LineKind::Declaration, text));
    }
    // A labelled example's result and truth, in place and mangled.
    let labelled = generated
        .iter()
        .find(|e| e.result.is_some() && e.truth.is_some())
        .map(|e| serde_json::to_string(e).unwrap())
        .expect("a generated example with a result and a truth");
    let truth_at = labelled.find("\"truth\":").unwrap();
    for text in [
        labelled.clone(),
        labelled.replacen("\"truth\":", "\"truth\":null,\"truth\":", 1),
        labelled.replacen("\"truth\":", "\"result\":null,\"truth\":", 1),
        labelled.replacen("\"truth\":", "\"truth\" : [],\"x\":", 1),
        format!(
            "{}\"truth\":{{}},{}",
            &labelled[..truth_at],
            &labelled[truth_at..]
        ),
        format!("{}\"truth\":{{\"unknown\":1}}}}", &labelled[..truth_at]),
        format!("{}\"truth\":{{}}}}", &labelled[..truth_at]),
        format!("{}\"truth\":{{}}", &labelled[..truth_at]),
    ] {
        lines.push((LineKind::Example, text));
    }
    for projection in [Projection::Examples, Projection::Declarations] {
        for (i, (kind, text)) in lines.iter().enumerate() {
            let line = i as u64 + 1;
            let fast = decode_line(text, line, *kind, projection, &reference);
            let wire = decode_wire_line(text, line, *kind, projection, &reference);
            assert_eq!(
                format!("{fast:?}"),
                format!("{wire:?}"),
                "{projection:?} {kind:?} {text}"
            );
        }
    }
}

#[test]
fn jsonl_is_canonical_proto3_json_and_accepts_original_field_names() {
    let mut w = JsonlWriter::new(Vec::new());
    w.write_declaration(&full_declaration("D1")).unwrap();
    let line = String::from_utf8(w.into_inner()).unwrap();
    // lowerCamelCase names, int64 as strings, enums by name, RFC 3339 times.
    assert!(line.contains("\"declarationId\":\"D1\""));
    assert!(line.contains("\"amountMinor\":\"2999\""));
    assert!(line.contains("\"DATASET_TYPE_H7\""));
    assert!(line.contains("\"lodgedAt\":\"2026-08-29T"));

    let snake = r#"{"declaration_id":"S1","lrn":"L1","dataset":"DATASET_TYPE_H7","lodged_at":"2026-09-01T10:00:00Z",
        "exporter":{"name":"Seller","address":{"country":"CN"}},
        "importer":{"name":"Buyer","address":{"country":"BE"}},
        "declarant":{"name":"Express"},
        "transport_documents":[{"kind":"TRANSPORT_DOCUMENT_KIND_HOUSE_AWB","reference":"H1"}],
        "items":[{"goods_item_number":1,"description":"Cotton T-shirt","hs6":"610910",
                  "intrinsic_value":{"currency":"EUR","amount_minor":799},"gross_mass_g":180}]}"#
        .replace('\n', " ");
    let records = read_all(snake.as_bytes(), Format::Jsonl);
    let (line, example) = records.into_iter().next().unwrap().unwrap();
    assert_eq!(line, 1);
    assert_eq!(example.declaration.declaration_id, "S1");
    assert_eq!(
        example.declaration.items[0].intrinsic_value.amount_minor,
        799
    );
}

#[test]
fn bad_jsonl_lines_are_reported_by_number_and_the_rest_is_read() {
    let good = |id: &str| serde_json::to_string(&full_example(id)).unwrap();
    let mut bad_hs6 = full_example("B3");
    bad_hs6.declaration.as_mut().unwrap().items[0].hs6 = "39269".into();
    let lines = [
        good("G1"),
        "{not json".to_owned(),
        serde_json::to_string(&bad_hs6).unwrap(),
        String::new(),
        good("G5").replace("\"lrn\"", "\"lrnn\""),
        good("G6"),
    ];
    let records = read_all(lines.join("\n").as_bytes(), Format::Jsonl);
    let summary: Vec<Result<u64, u64>> = records
        .iter()
        .map(|r| match r {
            Ok((line, _)) => Ok(*line),
            Err(e) => Err(e.line()),
        })
        .collect();
    assert_eq!(summary, vec![Ok(1), Err(2), Err(3), Err(5), Ok(6)]);
    let message = records[2].as_ref().unwrap_err().to_string();
    assert!(
        message.contains("line 3") && message.contains("declaration.items[0].hs6"),
        "{message}"
    );
    let unknown = records[3].as_ref().unwrap_err().to_string();
    assert!(unknown.contains("lrnn"), "{unknown}");
}

#[test]
fn bad_csv_rows_are_reported_by_line_and_the_rest_is_read() {
    let examples = generated(6, 3);
    let bytes = write_all(&examples, Format::Csv);
    let text = String::from_utf8(bytes).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Break the gross mass of the first row of the second declaration.
    let second_id = &examples[1].declaration.declaration_id;
    let row = lines
        .iter()
        .position(|l| l.starts_with(second_id.as_str()))
        .unwrap();
    let mass_col = parcel_risk::io::csv::COLUMNS
        .iter()
        .position(|c| *c == "gross_mass_g")
        .unwrap();
    lines[row] = with_cell(&lines[row], mass_col, "12kg");
    let records = read_all(lines.join("\n").as_bytes(), Format::Csv);
    assert_eq!(records.len(), 6);
    let bad: Vec<&RecordError> = records.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line(), row as u64 + 1);
    assert!(bad[0].to_string().contains("gross_mass_g"), "{}", bad[0]);
    let good: Vec<&TrainingExample> = records
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|(_, e)| e)
        .collect();
    assert_eq!(good.len(), 5);
    assert_eq!(good[0], &examples[0]);
    assert_eq!(good[1], &examples[2]);
}

#[test]
fn csv_extra_columns_become_attributes() {
    let csv = "declaration_id,lrn,dataset,lodged_at,exporter_name,exporter_country,importer_name,importer_country,declarant_name,transport_documents,goods_item_number,description,hs6,value_currency,value_minor,gross_mass_g,Risk_Zone\n\
               X1,L1,H7,2026-09-01T10:00:00Z,Seller,CN,Buyer,FR,Express,HOUSE_AWB:H1,1,,610910,EUR,799,180,north\n";
    let records = read_all(csv.as_bytes(), Format::Csv);
    let (_, example) = records.into_iter().next().unwrap().unwrap();
    assert_eq!(
        example
            .declaration
            .attributes
            .get("risk_zone")
            .map(|v| v.as_str()),
        Some("north")
    );
    // No description: accepted and flagged as missing.
    assert!(matches!(
        example.declaration.flags.as_slice(),
        [parcel_risk::domain::DataFlag::MissingDescription {
            goods_item_number: 1
        }]
    ));
}

/// A generated declaration with two items or more.
fn multi_item_example() -> TrainingExample {
    generated(30, 5)
        .into_iter()
        .find(|e| e.declaration.items.len() >= 2)
        .unwrap()
}

/// `example` written as CSV, its second item's row (file line 3) with the
/// cell of `column` set to `value`, lines ended by `line_end`, read back.
fn read_with_second_item_cell(
    example: TrainingExample,
    column: &str,
    value: &str,
    line_end: &str,
) -> Vec<Result<(u64, TrainingExample), RecordError>> {
    let text = String::from_utf8(write_all(&[example], Format::Csv)).unwrap();
    let at = parcel_risk::io::csv::COLUMNS
        .iter()
        .position(|c| *c == column)
        .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = with_cell(&lines[2], at, value);
    read_all((lines.join(line_end) + line_end).as_bytes(), Format::Csv)
}

/// `line` (one CSV row) with its cell `column` set to `value`, ended by nothing.
fn with_cell(line: &str, column: usize, value: &str) -> String {
    let mut cells: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes())
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    cells[column] = value.into();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(&cells).unwrap();
    String::from_utf8(w.into_inner().unwrap())
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn csv_rows_of_one_declaration_must_agree() {
    let multi = multi_item_example();
    let text = String::from_utf8(write_all(&[multi], Format::Csv)).unwrap();
    let tampered = text.replacen(",H7,", ",H6,", 2).replacen(",H6,", ",H7,", 1);
    let records = read_all(tampered.as_bytes(), Format::Csv);
    let err = records[0].as_ref().unwrap_err();
    assert_eq!(err.line(), 3);
    assert!(err.to_string().contains("column dataset differs"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a line is mangled into, reading it never panics: it is either a
    /// valid record or an error that names line 1.
    #[test]
    fn mangled_jsonl_lines_never_panic(cut in 0usize..2000, insert in "[\\PC]{0,8}", drop in 0usize..20) {
        let line = serde_json::to_string(&full_example("P1")).unwrap();
        let cut = cut.min(line.len());
        let cut = (0..=cut).rev().find(|i| line.is_char_boundary(*i)).unwrap();
        let end = (cut + drop).min(line.len());
        let end = (end..=line.len()).find(|i| line.is_char_boundary(*i)).unwrap();
        let mangled = format!("{}{}{}", &line[..cut], insert, &line[end..]);
        for record in read_all(mangled.as_bytes(), Format::Jsonl) {
            if let Err(e) = record {
                prop_assert_eq!(e.line(), 1);
            }
        }
    }

    /// Whatever a line is mangled into, the fast reading and the wire
    /// message's agree on it, value or error (they are different parsers).
    #[test]
    fn mangled_jsonl_lines_decode_as_the_wire_message_does(cut in 0usize..2000, insert in r#"(["\\{}:,0-9\[\]eE.+-]|[\PC]){0,8}"#, drop in 0usize..20) {
        use parcel_risk::io::jsonl::{LineKind, decode_line, decode_wire_line};
        let reference = ReferenceData::built_in();
        // Without the fixture's escapes, which the direct reader hands on
        // at once: mangled, the line is read by it as far as it can.
        let plain = |json: String| json.replace(r#"\""#, "'").replace(r"\n", " ");
        let declaration = plain(serde_json::to_string(&full_declaration("P1")).unwrap());
        let example = format!("{{\"declaration\":{declaration}}}");
        for (kind, line) in [(LineKind::Example, example), (LineKind::Declaration, declaration)] {
            let cut = cut.min(line.len());
            let cut = (0..=cut).rev().find(|i| line.is_char_boundary(*i)).unwrap();
            let end = (cut + drop).min(line.len());
            let end = (end..=line.len()).find(|i| line.is_char_boundary(*i)).unwrap();
            let mangled = format!("{}{}{}", &line[..cut], insert, &line[end..]);
            for projection in [Projection::Examples, Projection::Declarations] {
                let fast = decode_line(&mangled, 1, kind, projection, &reference);
                let wire = decode_wire_line(&mangled, 1, kind, projection, &reference);
                prop_assert_eq!(format!("{fast:?}"), format!("{wire:?}"), "{}", mangled);
            }
        }
    }

    /// Random values in the coded fields are either accepted (and then survive a
    /// round trip) or rejected with a violation naming the field.
    #[test]
    fn random_codes_are_validated_without_panic(
        hs6 in "[0-9a-z]{0,7}",
        currency in "[A-Za-z]{0,4}",
        country in "[A-Za-z]{0,3}",
        amount in any::<i64>(),
        mass in any::<i64>(),
        ioss in "(IM)?[0-9]{0,11}",
    ) {
        let mut d = full_declaration("R1");
        d.items[0].hs6 = hs6.clone();
        d.items[0].intrinsic_value = Some(pb::Money { currency: currency.clone(), amount_minor: amount });
        d.items[0].gross_mass_g = mass;
        d.importer.as_mut().unwrap().address.as_mut().unwrap().country = country.clone();
        d.ioss_number = ioss.clone();
        match parcel_risk::domain::Declaration::try_from(d.clone()) {
            Ok(checked) => {
                prop_assert_eq!(pb::Declaration::from(&checked), d);
            }
            Err(e) => {
                prop_assert!(!e.violations.is_empty());
                for v in &e.violations {
                    prop_assert!(
                        ["items[0].hs6", "items[0].intrinsic_value.currency", "items[0].intrinsic_value.amount_minor",
                         "items[0].gross_mass_g", "importer.address.country", "ioss_number"].contains(&v.field.as_str()),
                        "unexpected field {}", v.field
                    );
                }
            }
        }
    }
}

#[test]
fn gzip_and_zstd_files_read_like_plain_ones_whatever_their_names() {
    use std::io::Write;
    let examples = generated(300, 5);
    let dir = tempfile::tempdir().unwrap();
    for format in [Format::Jsonl, Format::Csv] {
        let plain = write_all(&examples, format);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        let ext = if format == Format::Jsonl {
            "jsonl"
        } else {
            "csv"
        };
        for (name, bytes) in [
            (format!("plain.{ext}"), plain.clone()),
            (format!("a.{ext}.gz"), gz.finish().unwrap()),
            (format!("b.{ext}.zst"), zst.clone()),
            // Content decides, not the name.
            (format!("c.{ext}"), zst),
        ] {
            let path = dir.path().join(&name);
            std::fs::write(&path, bytes).unwrap();
            let back: Vec<TrainingExample> =
                parcel_risk::io::open_examples(&path, None, ReferenceData::built_in())
                    .unwrap()
                    .map(|r| r.unwrap().unwrap().1)
                    .collect();
            assert!(back == examples, "{name}");
        }
    }
}

#[test]
fn parquet_with_typed_columns_from_other_tools_reads() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let ids = StringArray::from(vec!["P1", "P1", "P2"]);
    let items = Int64Array::from(vec![1, 2, 1]);
    let hs6 = StringArray::from(vec!["610910", "420292", "851830"]);
    let currency = StringArray::from(vec!["EUR", "EUR", "USD"]);
    let value = Int64Array::from(vec![799, 1250, 3000]);
    let mass = Int64Array::from(vec![180, 400, 90]);
    let lodged = StringArray::from(vec![
        "2026-09-01T10:00:00Z",
        "2026-09-01T10:00:00Z",
        "2026-09-01T11:00:00Z",
    ]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("declaration_id", Arc::new(ids)),
        ("lodged_at", Arc::new(lodged)),
        ("goods_item_number", Arc::new(items)),
        ("hs6", Arc::new(hs6)),
        ("value_currency", Arc::new(currency)),
        ("value_minor", Arc::new(value)),
        ("gross_mass_g", Arc::new(mass)),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    let bytes = w.into_inner().unwrap();
    let records = read_all(&bytes, Format::Parquet);
    assert_eq!(records.len(), 2);
    // Parties and the LRN are missing: the records are read and fail
    // validation by field, like a CSV row would.
    for r in &records {
        let e = r.as_ref().unwrap_err();
        assert!(e.to_string().contains("lrn"), "{e}");
    }
}

/// A Parquet file of goods items, one row each: declaration `ids[i]`,
/// importer `names[i]`, items numbered from 1 within runs of `per_declaration`
/// rows; the other columns the same in every row.
fn items_parquet(ids: &[&str], names: &[Option<&str>], per_declaration: i64) -> Vec<u8> {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let rows = ids.len();
    let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; rows])) };
    let number = |value: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![value; rows])) };
    let item_numbers = (0..rows as i64).map(|i| i % per_declaration + 1);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("declaration_id", Arc::new(StringArray::from(ids.to_vec()))),
        ("lodged_at", text("2026-09-01T10:00:00Z")),
        ("importer_name", Arc::new(StringArray::from(names.to_vec()))),
        (
            "goods_item_number",
            Arc::new(Int64Array::from_iter_values(item_numbers)),
        ),
        ("hs6", text("610910")),
        ("value_currency", text("EUR")),
        ("value_minor", number(799)),
        ("gross_mass_g", number(180)),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap()
}

#[test]
fn parquet_rows_of_one_declaration_must_agree() {
    // Each declaration has two rows. D1's importer names differ in their
    // last byte, past two whole words; D2's in the middle of the first
    // word; D3's agree, and so do D4's long ones; D5's differ in length only.
    let ids = ["D1", "D1", "D2", "D2", "D3", "D3", "D4", "D4", "D5", "D5"];
    let names = [
        "Shenzhen Trading 1",
        "Shenzhen Trading 2",
        "ABCDEFGHIJ",
        "ABCDEFGXIJ",
        "Same",
        "Same",
        "A long name that spans several words",
        "A long name that spans several words",
        "Shenzhen Trading",
        "Shenzhen Trading ",
    ];
    let names = names.map(Some);
    let records = read_all(&items_parquet(&ids, &names, 2), Format::Parquet);
    let errors: Vec<(u64, String)> = records
        .iter()
        .map(|r| {
            let e = r.as_ref().unwrap_err();
            (e.line(), e.to_string())
        })
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    for (i, (line, message)) in errors.iter().enumerate() {
        let disagree = message.contains("column importer_name differs from line");
        assert_eq!(disagree, ![2, 3].contains(&i), "declaration {i}: {message}");
        if disagree {
            assert_eq!(*line, 2 * i as u64 + 2, "{message}");
        }
    }
}

#[test]
fn parquet_rows_after_the_second_are_checked_against_the_first() {
    // Three rows a declaration. D1's third row differs from the two before;
    // D2's second differs from its first and its third agrees with the
    // second; D3's agree; D4's third has a null where the others have text.
    let ids = [
        "D1", "D1", "D1", "D2", "D2", "D2", "D3", "D3", "D3", "D4", "D4", "D4",
    ];
    let names = [
        Some("Same"),
        Some("Same"),
        Some("Other"),
        Some("Same"),
        Some("Other"),
        Some("Other"),
        Some("Same"),
        Some("Same"),
        Some("Same"),
        Some("Same"),
        Some("Same"),
        None,
    ];
    let records = read_all(&items_parquet(&ids, &names, 3), Format::Parquet);
    assert_eq!(records.len(), 4);
    let disagreement = |i: usize| {
        records[i]
            .as_ref()
            .err()
            .filter(|e| e.to_string().contains("differs from line"))
            .map(|e| (e.line(), e.to_string()))
    };
    let (line, message) = disagreement(0).expect("D1's third row differs");
    assert_eq!(line, 3, "{message}");
    assert!(
        message.contains("column importer_name differs from line 1"),
        "{message}"
    );
    let (line, message) = disagreement(1).expect("D2's second row differs");
    assert_eq!(line, 5, "{message}");
    assert!(
        message.contains("column importer_name differs from line 4"),
        "{message}"
    );
    assert_eq!(disagreement(2), None, "D3's rows agree");
    let (line, message) = disagreement(3).expect("D4's third row is empty");
    assert_eq!(line, 12, "{message}");
}

#[test]
fn a_bad_item_in_a_crlf_csv_is_reported_on_its_own_line_with_its_declaration() {
    let multi = multi_item_example();
    let id = multi.declaration.declaration_id.clone();
    // Windows line ends, and the second item (file line 3) gets a bad code.
    let records = read_with_second_item_cell(multi, "hs6", "12", "\r\n");
    let err = records[0].as_ref().unwrap_err();
    assert_eq!(err.line(), 3, "{err}");
    assert_eq!(err.declaration_id(), Some(id.as_str()));
    assert!(
        err.to_string().starts_with(&format!(
            "line 3 (declaration {id}): declaration.items[1].hs6"
        )),
        "{err}"
    );
}

#[test]
fn a_goods_item_number_used_twice_in_a_csv_is_reported_on_the_repeating_row() {
    let multi = multi_item_example();
    let id = multi.declaration.declaration_id.clone();
    let first_number = multi.declaration.items[0].goods_item_number.to_string();
    // The second item (file line 3) repeats the first item's number.
    let records = read_with_second_item_cell(multi, "goods_item_number", &first_number, "\n");
    let err = records[0].as_ref().unwrap_err();
    assert_eq!(err.line(), 3, "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "line 3 (declaration {id}): declaration.items[1].goods_item_number"
        )),
        "{err}"
    );
}
