//! Batch rescoring: order, rejects by line, every input format, the same
//! answers as the service, bounded memory.

use std::path::{Path, PathBuf};

use parcel_risk::batch::{self, Encoder, Options, OutputWriter, Scoring, Summary, Work};
use parcel_risk::domain::ReferenceData;
use parcel_risk::io::columnar::ColumnarWriter;
use parcel_risk::io::jsonl::JsonlWriter;
use parcel_risk::io::{Container, Format, Projection, RecordError, open_framer};
use parcel_risk::pb;
use parcel_risk::scoring::{PriorityConfig, Router};

use crate::common::trained;

/// The fixture's declarations as bare JSON lines.
fn declaration_lines(n: usize) -> Vec<String> {
    let (_, examples) = trained();
    examples
        .iter()
        .take(n)
        .map(|e| serde_json::to_string(&pb::Declaration::from(&e.declaration)).unwrap())
        .collect()
}

struct Run {
    assessments: Vec<pb::RiskAssessment>,
    rejected_lines: Vec<u64>,
    summary: Summary,
}

/// Rescores `input` with the fixture's model into JSON Lines, in small
/// batches so that records cross batch boundaries.
fn rescore(input: &Path, format: Option<Format>) -> Run {
    rescore_with(input, format, PriorityConfig::default())
}

/// As [`rescore`], under channel settings `priority`.
fn rescore_with(input: &Path, format: Option<Format>, priority: PriorityConfig) -> Run {
    let out = tempfile::NamedTempFile::new().unwrap();
    let (rejected_lines, summary) =
        rescore_into(input, format, out.path(), Format::Jsonl, priority);
    let assessments = std::fs::read_to_string(out.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        assessments,
        rejected_lines,
        summary,
    }
}

fn rescore_into(
    input: &Path,
    format: Option<Format>,
    out: &Path,
    output_format: Format,
    priority: PriorityConfig,
) -> (Vec<u64>, Summary) {
    rescore_from(input, format, out, output_format, priority, None)
}

/// As [`rescore_into`], scoring from `score_from` on (the rest warms up).
fn rescore_from(
    input: &Path,
    format: Option<Format>,
    out: &Path,
    output_format: Format,
    priority: PriorityConfig,
    score_from: Option<chrono::DateTime<chrono::Utc>>,
) -> (Vec<u64>, Summary) {
    let (model, _) = trained();
    let router = Router::new(model.clone(), priority);
    rescore_by(&router, input, format, out, output_format, score_from)
}

/// Threads reading a Parquet file's row groups in these runs: a file of
/// several row groups is read as on a large machine, a file of one as on
/// any (one reader).
const PARQUET_READERS: usize = 3;

/// The Parquet file `parquet` rewritten with row groups of `rows` rows, so
/// that declarations straddle them.
fn in_row_groups_of(parquet: &[u8], rows: usize) -> Vec<u8> {
    use arrow_array::RecordBatchReader;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(parquet.to_vec()))
        .unwrap()
        .build()
        .unwrap();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), reader.schema(), Some(properties)).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.into_inner().unwrap()
}

/// Rescores `input` with `router` into `out`; the rejected lines and the
/// summary.
fn rescore_by(
    router: &Router,
    input: &Path,
    format: Option<Format>,
    out: &Path,
    output_format: Format,
    score_from: Option<chrono::DateTime<chrono::Utc>>,
) -> (Vec<u64>, Summary) {
    let output =
        OutputWriter::new(output_format, Box::new(std::fs::File::create(out).unwrap())).unwrap();
    let work = Work::Score(Box::new(Scoring {
        router,
        encoder: Encoder::new(output_format, chrono::Utc::now()),
        output,
    }));
    let mut rejected_lines = Vec::new();
    let summary = batch::run(
        open_framer(
            input,
            format,
            Projection::Declarations,
            None,
            PARQUET_READERS,
        )
        .unwrap(),
        &ReferenceData::built_in(),
        work,
        Options {
            batch_records: 100,
            chunk_records: 16,
            score_from,
        },
        None,
        &mut |e: &RecordError| {
            rejected_lines.push(e.line());
            Ok(())
        },
        &mut |_| {},
    )
    .unwrap();
    (rejected_lines, summary)
}

#[test]
fn the_flat_csv_output_says_what_the_full_json_output_says() {
    let lines = declaration_lines(300);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "in.jsonl", lines.join("\n").as_bytes());
    let full = rescore(&path, None).assessments;
    let csv_path = dir.path().join("out.csv");
    rescore_into(
        &path,
        None,
        &csv_path,
        Format::Csv,
        PriorityConfig::default(),
    );
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), full.len());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, a) in rows.iter().zip(&full) {
        let p = a.priority.unwrap();
        assert_eq!(&row[col("declaration_id")], a.declaration_id);
        assert_eq!(
            format!("CHANNEL_{}", &row[col("channel")]),
            pb::Channel::try_from(p.channel).unwrap().as_str_name()
        );
        assert_eq!(
            row[col("overall_score")].parse::<f64>().unwrap(),
            a.overall_score
        );
        assert_eq!(
            row[col("revenue_at_risk_eur_cents")]
                .parse::<i64>()
                .unwrap(),
            a.revenue_at_risk_eur_cents
        );
        let codes: Vec<&str> = a.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(&row[col("reason_codes")], codes.join(";"));
        let reasons: Vec<pb::ReasonCode> = serde_json::from_str(&row[col("reasons")]).unwrap();
        assert_eq!(reasons, a.reasons);
    }
    assert!(full.iter().any(|a| !a.reasons.is_empty()));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_rows_scattered_through_a_file_are_exactly_the_rejects_and_order_is_kept() {
    let mut lines = declaration_lines(1_000);
    // Line numbers are 1-based; breakage of every kind, across batches.
    let mut broken = std::collections::BTreeMap::new();
    broken.insert(1u64, "{not json".to_owned());
    broken.insert(
        150,
        lines[149].replace("\"hs6\":\"", "\"hs6\":\"X"), // bad HS6
    );
    broken.insert(401, lines[400].replace("\"lrn\"", "\"lrnn\"")); // unknown field
    broken.insert(
        999,
        lines[998].replace("\"currency\":\"", "\"currency\":\"Q"), // bad currency
    );
    for (line, text) in &broken {
        lines[*line as usize - 1] = text.clone();
    }
    // A blank line is no record and no reject, but counts in line numbers.
    lines.insert(600, String::new());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "in.jsonl", lines.join("\n").as_bytes());
    let run = rescore(&path, None);
    let expected_rejects: Vec<u64> = broken
        .keys()
        .map(|&l| if l > 600 { l + 1 } else { l })
        .collect();
    assert_eq!(run.rejected_lines, expected_rejects);
    assert_eq!(run.summary.records, 1_000);
    assert_eq!(run.summary.rejected, 4);
    assert_eq!(run.summary.scored, 996);
    let (_, examples) = trained();
    let expected_ids: Vec<&str> = examples
        .iter()
        .take(1_000)
        .enumerate()
        .filter(|(i, _)| !broken.contains_key(&(*i as u64 + 1)))
        .map(|(_, e)| e.declaration.declaration_id.as_str())
        .collect();
    let ids: Vec<&str> = run
        .assessments
        .iter()
        .map(|a| a.declaration_id.as_str())
        .collect();
    assert_eq!(ids, expected_ids);
    assert_eq!(run.summary.channels.iter().sum::<u64>(), 996);
}

#[test]
#[cfg(unix)]
fn the_one_thread_stages_cpu_time_is_measured_within_the_runs_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "in.jsonl",
        declaration_lines(300).join("\n").as_bytes(),
    );
    let summary = rescore(&path, None).summary;
    // Each thread handled 300 records, and lived within the run.
    for (thread, cpu) in [
        ("reader", summary.reader_cpu),
        ("window", summary.window_cpu),
        ("writer", summary.writer_cpu),
    ] {
        let cpu = cpu.expect("a Unix tells a thread's CPU time");
        assert!(
            cpu > std::time::Duration::ZERO && cpu <= summary.elapsed,
            "{thread} {cpu:?}, run {:?}",
            summary.elapsed
        );
    }
    let one = summary.one_thread_stages().unwrap();
    let slowest = [one.reader, one.window, one.route, one.writer]
        .into_iter()
        .fold(0.0, f64::max);
    assert_eq!(one.ceiling_per_second(), 1e6 / slowest);
    assert!(one.ceiling_per_second() > summary.per_second());
}

#[test]
fn every_input_format_and_compression_gives_the_same_assessments() {
    let (_, examples) = trained();
    let examples = &examples[..400];
    let dir = tempfile::tempdir().unwrap();
    let mut jsonl = JsonlWriter::new(Vec::new());
    let mut csv = parcel_risk::io::csv::CsvWriter::new(Vec::new()).unwrap();
    let mut parquet = ColumnarWriter::new(Vec::new(), Container::Parquet).unwrap();
    let mut arrow = ColumnarWriter::new(Vec::new(), Container::ArrowIpc).unwrap();
    for e in examples {
        let wire = pb::TrainingExample::from(e);
        jsonl.write_pb(&wire).unwrap();
        csv.write_pb(&wire).unwrap();
        parquet.write_pb(&wire).unwrap();
        arrow.write_pb(&wire).unwrap();
    }
    let jsonl = jsonl.into_inner();
    let parquet = parquet.finish().unwrap();
    let inputs = [
        write(dir.path(), "a.jsonl", &jsonl),
        write(dir.path(), "b.csv", &csv.into_inner().unwrap()),
        write(dir.path(), "c.parquet", &parquet),
        // Read by three threads at once (`PARQUET_READERS`).
        write(dir.path(), "f.parquet", &in_row_groups_of(&parquet, 37)),
        write(dir.path(), "e.arrow", &arrow.finish().unwrap()),
        write(
            dir.path(),
            "d.jsonl.zst",
            &zstd::encode_all(jsonl.as_slice(), 3).unwrap(),
        ),
    ];
    let strip = |mut a: pb::RiskAssessment| {
        a.assessed_at = None;
        a
    };
    let reference: Vec<pb::RiskAssessment> = rescore(&inputs[0], None)
        .assessments
        .into_iter()
        .map(strip)
        .collect();
    assert_eq!(reference.len(), 400);
    for input in &inputs[1..] {
        let run = rescore(input, None);
        assert!(run.rejected_lines.is_empty(), "{}", input.display());
        let got: Vec<pb::RiskAssessment> = run.assessments.into_iter().map(strip).collect();
        assert!(got == reference, "{} differs", input.display());
    }
}

/// Where the assessments of the pinned build are kept.
const PINNED_ASSESSMENTS: &str = "tests/fixtures/pinned-assessments.csv";

/// A change that makes scoring or decoding faster must not change what it
/// says: generated traffic (dated after the default model's training, so
/// that the live record counts it), rescored from JSON Lines, CSV and
/// Parquet with the built-in model, gives the assessments the pinned build
/// gave, every score to the last bit (as printed: the shortest text that
/// reads back to the same f64), every channel and reason. A retrained
/// default model or a deliberate change of scoring re-pins them:
/// `PARCEL_RISK_PIN=1 cargo test pinned_build`.
#[test]
fn rescoring_generated_traffic_gives_the_assessments_of_the_pinned_build() {
    let generator = parcel_risk::generate::Generator::new(parcel_risk::generate::GeneratorConfig {
        parcels: 500,
        seed: 20_261_201,
        days: 2,
        start: "2026-10-01T00:00:00Z".parse().unwrap(),
        ..parcel_risk::generate::GeneratorConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut jsonl = JsonlWriter::new(Vec::new());
    let mut csv = parcel_risk::io::csv::CsvWriter::new(Vec::new()).unwrap();
    let mut parquet = ColumnarWriter::new(Vec::new(), Container::Parquet).unwrap();
    for c in 0..generator.chunk_count() {
        for example in generator.chunk(c).0 {
            let declaration = pb::TrainingExample {
                declaration: example.declaration,
                ..Default::default()
            };
            jsonl.write_pb(&declaration).unwrap();
            csv.write_pb(&declaration).unwrap();
            parquet.write_pb(&declaration).unwrap();
        }
    }
    let inputs = [
        write(dir.path(), "in.jsonl", &jsonl.into_inner()),
        write(dir.path(), "in.csv", &csv.into_inner().unwrap()),
        write(dir.path(), "in.parquet", &parquet.finish().unwrap()),
    ];
    let model = std::sync::Arc::new(parcel_risk::model::ModelArtifact::embedded_default().unwrap());
    let pinned_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PINNED_ASSESSMENTS);
    for (i, input) in inputs.iter().enumerate() {
        // A router of its own per input: its live record starts empty.
        let router = Router::new(model.clone(), PriorityConfig::default());
        let out = dir.path().join("out.csv");
        let (rejected, _) = rescore_by(&router, input, None, &out, Format::Csv, None);
        assert!(rejected.is_empty(), "{}: {rejected:?}", input.display());
        let got = pinned_form(&out);
        assert_eq!(got.lines().count(), 501, "{}", input.display());
        if i == 0 && std::env::var_os("PARCEL_RISK_PIN").is_some() {
            std::fs::create_dir_all(pinned_path.parent().unwrap()).unwrap();
            std::fs::write(&pinned_path, &got).unwrap();
        }
        let pinned = std::fs::read_to_string(&pinned_path).unwrap();
        for (line, (got, pinned)) in got.lines().zip(pinned.lines()).enumerate() {
            assert_eq!(
                got,
                pinned,
                "{} line {}: the assessment differs from the pinned build's",
                input.display(),
                line + 1
            );
        }
        assert_eq!(got.lines().count(), pinned.lines().count());
    }
}

/// The assessments of a CSV output, a line each: every column but the time
/// of assessment, with the reasons' text (messages and evidence) as a hash
/// so that the file stays small.
fn pinned_form(csv_output: &Path) -> String {
    let mut reader = ::csv::Reader::from_path(csv_output).unwrap();
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (reasons, assessed_at) = (column("reasons"), column("assessed_at"));
    let mut out = String::new();
    let fields: Vec<&str> = header.iter().filter(|h| *h != "assessed_at").collect();
    out.push_str(&fields.join(","));
    out.push('\n');
    for record in reader.records() {
        let record = record.unwrap();
        let cells: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != assessed_at)
            .map(|(i, cell)| {
                if i == reasons {
                    let hash = parcel_risk::features::history::declaration_key(cell);
                    format!("{hash:016x}")
                } else {
                    cell.to_string()
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[test]
fn an_arrow_file_named_as_text_is_named_for_what_it_is() {
    let (_, examples) = trained();
    let mut arrow = ColumnarWriter::new(Vec::new(), Container::ArrowIpc).unwrap();
    for e in &examples[..10] {
        arrow.write_pb(&pb::TrainingExample::from(e)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let misnamed = write(dir.path(), "declarations.csv", &arrow.finish().unwrap());
    let error = open_framer(&misnamed, None, Projection::Declarations, None, 1)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("ARROW1") && error.contains(".arrow"),
        "{error}"
    );
    // Named for what it is, it reads.
    let named = dir.path().join("declarations.arrow");
    std::fs::rename(&misnamed, &named).unwrap();
    let run = rescore(&named, None);
    assert_eq!(run.assessments.len(), 10);
    assert!(run.rejected_lines.is_empty());
}

#[test]
fn assessments_written_as_parquet_and_arrow_ipc_hold_the_same_rows() {
    let (_, examples) = trained();
    let dir = tempfile::tempdir().unwrap();
    let mut jsonl = JsonlWriter::new(Vec::new());
    for e in &examples[..300] {
        jsonl.write(e).unwrap();
    }
    let input = write(dir.path(), "in.jsonl", &jsonl.into_inner());
    let read_back = |format: Format, name: &str| {
        let out = dir.path().join(name);
        let (rejected, _) = rescore_into(&input, None, &out, format, PriorityConfig::default());
        assert!(rejected.is_empty());
        let batches: Vec<arrow_array::RecordBatch> = match format {
            Format::Arrow => {
                arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&out).unwrap(), None)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            _ => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&out).unwrap(),
            )
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        };
        // Every cell as text, row by row; the assessment time is the run's own.
        let mut rows = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let mut cells = Vec::new();
                for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
                    use arrow_array::cast::AsArray;
                    use arrow_array::types::{Float64Type, Int64Type};
                    if field.name() == "assessed_at" {
                        continue;
                    }
                    cells.push(match field.data_type() {
                        arrow_schema::DataType::Float64 => {
                            column.as_primitive::<Float64Type>().value(row).to_string()
                        }
                        arrow_schema::DataType::Int64 => {
                            column.as_primitive::<Int64Type>().value(row).to_string()
                        }
                        _ => column.as_string::<i32>().value(row).to_owned(),
                    });
                }
                rows.push(cells);
            }
        }
        rows
    };
    let parquet = read_back(Format::Parquet, "out.parquet");
    let arrow = read_back(Format::Arrow, "out.arrow");
    assert_eq!(parquet.len(), 300);
    assert_eq!(parquet[0].len(), 15);
    assert!(
        parquet == arrow,
        "the Arrow IPC output differs from the Parquet output"
    );
}

#[test]
fn a_slice_rescored_after_a_warm_up_scores_as_one_pass_over_everything() {
    let (_, examples) = trained();
    let examples = &examples[..1500];
    let dir = tempfile::tempdir().unwrap();
    let mut jsonl = JsonlWriter::new(Vec::new());
    for e in examples {
        jsonl.write(e).unwrap();
    }
    let input = write(dir.path(), "all.jsonl", &jsonl.into_inner());
    let mut times: Vec<_> = examples.iter().map(|e| e.declaration.lodged_at).collect();
    times.sort();
    let from = times[times.len() / 2];
    let lodged: std::collections::HashMap<&str, _> = examples
        .iter()
        .map(|e| {
            (
                e.declaration.declaration_id.as_str(),
                e.declaration.lodged_at,
            )
        })
        .collect();
    // Scores, risk reasons and stakes; the channel is the allocator's, which
    // starts afresh at `from`, and so are its random compliance picks.
    let scores = |path: &Path| -> Vec<pb::RiskAssessment> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut a: pb::RiskAssessment = serde_json::from_str(l).unwrap();
                a.assessed_at = None;
                a.priority = None;
                a.reasons.retain(|r| r.code != "RND_COMPLIANCE_SAMPLE");
                a
            })
            .collect()
    };
    let run = |input: &Path, score_from| {
        let out = dir.path().join("out.jsonl");
        let (rejected, summary) = rescore_from(
            input,
            None,
            &out,
            Format::Jsonl,
            PriorityConfig::default(),
            score_from,
        );
        assert!(rejected.is_empty());
        (scores(&out), summary)
    };
    let (everything, _) = run(&input, None);
    let (after_warm_up, summary) = run(&input, Some(from));
    let tail: Vec<pb::RiskAssessment> = everything
        .iter()
        .filter(|a| lodged[a.declaration_id.as_str()] >= from)
        .cloned()
        .collect();
    assert_eq!(summary.warm_up as usize + tail.len(), 1500);
    assert!(tail.len() >= 700, "{}", tail.len());
    assert!(after_warm_up == tail, "the warmed-up slice differs");
    // Without the warm-up, the windows miss what came before: the warm-up is
    // what makes the slice exact.
    let mut cold = JsonlWriter::new(Vec::new());
    for e in examples.iter().filter(|e| e.declaration.lodged_at >= from) {
        cold.write(e).unwrap();
    }
    let cold = write(dir.path(), "slice.jsonl", &cold.into_inner());
    let (without_warm_up, _) = run(&cold, None);
    assert_eq!(without_warm_up.len(), tail.len());
    assert!(
        without_warm_up != tail,
        "the slice does not need its warm-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_rescore_and_simulate_route_a_stream_alike() {
    use parcel_risk::pb::score_declarations_response::Outcome;
    use parcel_risk::scoring::PriorityParams;
    use tokio_stream::StreamExt;
    // Enough RED and YELLOW to compare (the defaults would give a handful),
    // in lodging order, as simulate reads them.
    let priority = PriorityParams {
        red_share: 0.03,
        yellow_share: 0.05,
        ..PriorityParams::default()
    }
    .check()
    .unwrap();
    let (model, examples) = trained();
    let mut examples: Vec<_> = examples.iter().take(1500).cloned().collect();
    parcel_risk::model::train::sort_by_time(&mut examples);
    let lines: Vec<String> = examples
        .iter()
        .map(|e| serde_json::to_string(&pb::Declaration::from(&e.declaration)).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "in.jsonl", lines.join("\n").as_bytes());
    let batch_priority = priority.clone();
    let batch = tokio::task::spawn_blocking(move || rescore_with(&path, None, batch_priority))
        .await
        .unwrap();

    let server = crate::grpc::TestServer::start_with(Default::default(), priority.clone()).await;
    let mut client = server.client().await;
    let requests: Vec<pb::ScoreDeclarationsRequest> = lines
        .iter()
        .map(|l| pb::ScoreDeclarationsRequest {
            declaration: Some(serde_json::from_str(l).unwrap()),
        })
        .collect();
    let served: Vec<pb::RiskAssessment> = client
        .score_declarations(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| match r.unwrap().outcome.unwrap() {
            Outcome::Assessment(a) => a,
            Outcome::Error(e) => panic!("{e:?}"),
        })
        .collect()
        .await;
    assert_eq!(served.len(), batch.assessments.len());
    let channel = |a: &pb::RiskAssessment| a.priority.as_ref().unwrap().channel;
    let red_of = |assessments: &[pb::RiskAssessment]| -> Vec<String> {
        assessments
            .iter()
            .filter(|a| channel(a) == pb::Channel::Red as i32)
            .map(|a| a.declaration_id.clone())
            .collect()
    };
    for (mut s, mut b) in served
        .iter()
        .cloned()
        .zip(batch.assessments.iter().cloned())
    {
        // Only the time of assessment may differ.
        s.assessed_at = None;
        b.assessed_at = None;
        assert_eq!(s, b);
    }
    let red = red_of(&served);
    let yellow = served
        .iter()
        .filter(|a| channel(a) == pb::Channel::Yellow as i32)
        .count();
    assert!(
        red.len() >= 20 && yellow >= 20,
        "{} RED, {yellow} YELLOW",
        red.len()
    );

    let report =
        parcel_risk::evaluate::simulate(model.clone(), examples, priority, None, true).unwrap();
    let mut simulated = report.red_ids.clone();
    let mut served_red = red;
    simulated.sort();
    served_red.sort();
    assert_eq!(simulated, served_red, "simulate picks the service's RED");
    assert_eq!(
        report.days.iter().map(|d| d.red).sum::<u64>() as usize,
        served_red.len()
    );
}

/// The shipped binary.
const BIN: &str = env!("CARGO_BIN_EXE_parcel-risk");

/// Generates `parcels` parcels (seed 4) into `path` with the binary.
fn generate_with_binary(path: &Path, parcels: u64, extra: &[&str]) -> std::path::PathBuf {
    let status = std::process::Command::new(BIN)
        .args(["generate", "--parcels", &parcels.to_string(), "--seed", "4"])
        .args(extra)
        .args(["--quiet", "--out"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    path.to_owned()
}

#[test]
fn check_reads_json_lines_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = generate_with_binary(&dir.path().join("in.jsonl"), 200, &[]);
    let mut child = std::process::Command::new(BIN)
        .args(["check", "--data", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&input).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("rejected 0"), "{said}");
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `parcel-risk rescore ... | head`: the pipe closes, the run ends quietly.
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let input = generate_with_binary(
        &dir.path().join("in.jsonl"),
        20_000,
        &["--declarations-only"],
    );
    let mut child = std::process::Command::new(BIN)
        .args(["rescore", "--input"])
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4096];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is dropped here: the reader is gone.
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn memory_stays_flat_as_the_input_grows() {
    // The real binary: peak memory is a property of the process.
    let dir = tempfile::tempdir().unwrap();
    let peak = |parcels: u64| -> f64 {
        let input = generate_with_binary(
            &dir.path().join(format!("{parcels}.jsonl")),
            parcels,
            &["--declarations-only"],
        );
        let out = std::process::Command::new(BIN)
            .args([
                "rescore",
                "--batch-records",
                "256",
                "--threads",
                "2",
                "--input",
            ])
            .arg(&input)
            .args(["--output"])
            .arg(dir.path().join(format!("{parcels}.out.csv")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        let mib = stderr
            .split("peak memory ")
            .nth(1)
            .and_then(|rest| rest.split(" MiB").next())
            .unwrap_or_else(|| panic!("no peak memory in {stderr}"));
        mib.parse().unwrap()
    };
    let small = peak(5_000);
    let large = peak(40_000);
    // Eight times the input, essentially the same memory (the model and
    // the process dominate; the pipeline holds a few batches).
    assert!(
        large < small * 1.25 + 8.0,
        "peak memory grew from {small} MiB to {large} MiB"
    );
}

#[test]
fn train_never_overwrites_a_model_unasked_and_json_logs_carry_the_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("model.json"), b"{}").unwrap();
    let refused = std::process::Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "train",
            "--data",
            "missing.jsonl",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    // Refused before the data is read, in one JSON line on stderr.
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let line: serde_json::Value =
        serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(line["level"], "ERROR");
    let error = line["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains("holds a model already; pass --force"),
        "{error}"
    );
    assert_eq!(std::fs::read(out.join("model.json")).unwrap(), b"{}");
    // With --force it goes on (and fails on the missing data, as plain text).
    let forced = std::process::Command::new(BIN)
        .args(["train", "--force", "--data", "missing.jsonl", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&forced.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("missing.jsonl"),
        "{stderr}"
    );
}

#[test]
fn a_parquet_file_on_stdin_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let parquet =
        generate_with_binary(&dir.path().join("in.parquet"), 50, &["--declarations-only"]);
    let misnamed = dir.path().join("in.jsonl");
    std::fs::copy(&parquet, &misnamed).unwrap();
    let on_stdin = std::process::Command::new(BIN)
        .args(["check", "--data", "-"])
        .stdin(std::fs::File::open(&parquet).unwrap())
        .output()
        .unwrap();
    assert_eq!(on_stdin.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&on_stdin.stderr);
    assert!(
        stderr.contains("standard input holds a Parquet file"),
        "{stderr}"
    );
    let by_name = std::process::Command::new(BIN)
        .args(["check", "--data"])
        .arg(&misnamed)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&by_name.stderr);
    assert!(stderr.contains("is a Parquet file"), "{stderr}");
    assert!(stderr.contains("--format parquet"), "{stderr}");
    // rescore names its input's format with another flag.
    assert!(stderr.contains("--input-format parquet"), "{stderr}");
}

#[test]
fn progress_stands_where_scoring_is_not_where_reading_is() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    // Several MiB, so that the reader (1 MiB reads) runs batches ahead.
    let input = generate_with_binary(&dir.path().join("in.jsonl"), 4000, &["--declarations-only"]);
    let size = std::fs::metadata(&input).unwrap().len();
    let (model, _) = trained();
    let router = Router::new(model.clone(), PriorityConfig::default());
    let output = OutputWriter::new(Format::Csv, Box::new(std::io::sink())).unwrap();
    let work = Work::Score(Box::new(Scoring {
        router: &router,
        encoder: Encoder::new(Format::Csv, chrono::Utc::now()),
        output,
    }));
    let read = Arc::new(AtomicU64::new(0));
    let mut seen = Vec::new();
    batch::run(
        open_framer(
            &input,
            None,
            Projection::Declarations,
            Some(Arc::clone(&read)),
            1,
        )
        .unwrap(),
        &ReferenceData::built_in(),
        work,
        Options {
            batch_records: 200,
            chunk_records: 50,
            ..Options::default()
        },
        Some(&read),
        &mut |_| Ok(()),
        &mut |s| seen.push((s.input_position, read.load(Ordering::Relaxed))),
    )
    .unwrap();
    assert!(size > 3 << 20, "{size}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.iter().all(|(finished, read)| finished <= read));
    // Halfway through the calls, the finished part is behind what was read
    // at some point, and nowhere near the end; the last call is the end.
    assert!(
        seen.iter().any(|(finished, read)| finished < read),
        "{seen:?}"
    );
    assert!(seen[seen.len() / 4].0 < size, "{seen:?}");
    assert_eq!(seen.last().unwrap().0, size);
}

#[test]
fn red_per_day_holds_on_a_generated_stream_whose_volume_doubles_then_halves() {
    use chrono::NaiveDate;
    use parcel_risk::domain::Channel;
    use parcel_risk::generate::{Generator, GeneratorConfig};
    use parcel_risk::scoring::PriorityParams;
    let (model, _) = trained();
    let generator = Generator::new(GeneratorConfig {
        parcels: 36_000,
        days: 6,
        seed: 5,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut examples: Vec<_> = (0..generator.chunk_count())
        .flat_map(|c| generator.domain_chunk(c))
        .collect();
    parcel_risk::model::train::sort_by_time(&mut examples);
    // Lodging days 2 to 5 of the generated week (the first and last ramp up
    // and down): half the traffic, all of it, half, a quarter.
    let first = examples[0].declaration.lodged_at.date_naive();
    let day_of = |e: &parcel_risk::domain::TrainingExample| {
        (e.declaration.lodged_at.date_naive() - first).num_days()
    };
    let keep = |day: i64| match day {
        1 => 0.5,
        2 => 1.0,
        3 => 0.5,
        4 => 0.25,
        _ => 0.0,
    };
    let stream: Vec<_> = examples
        .into_iter()
        .filter(|e| {
            let lottery =
                (parcel_risk::features::history::declaration_key(&e.declaration.declaration_id)
                    % 1000) as f64
                    / 1000.0;
            lottery < keep(day_of(e))
        })
        .map(|e| e.declaration)
        .collect();
    let capacity = 25.0;
    let router = Router::new(
        model.clone(),
        PriorityParams {
            red_per_day: Some(capacity),
            ..PriorityParams::default()
        }
        .check()
        .unwrap(),
    );
    let scorer = router.scorer();
    let mut per_day: std::collections::BTreeMap<NaiveDate, (u32, u32)> = Default::default();
    for chunk in stream.chunks(64) {
        for a in router.score_all(&scorer, chunk, |_| ()) {
            let day = per_day.entry(a.lodged_at.date_naive()).or_default();
            day.0 += 1;
            day.1 += u32::from(a.route.unwrap().channel == Channel::Red);
        }
    }
    let days: Vec<(NaiveDate, (u32, u32))> = per_day.into_iter().collect();
    assert_eq!(days.len(), 4, "{days:?}");
    // Volumes double, then halve twice.
    let volume = |i: usize| f64::from(days[i].1.0);
    assert!(
        volume(1) > 1.7 * volume(0) && volume(2) < 0.6 * volume(1),
        "{days:?}"
    );
    for (date, (_, red)) in &days[1..] {
        assert!(
            (f64::from(*red) - capacity).abs() <= 0.1 * capacity,
            "{date}: {red} RED, capacity {capacity}; all days {days:?}"
        );
    }
}

#[test]
fn drift_reads_a_file_against_the_built_in_model_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate_with_binary(&dir.path().join("traffic.jsonl"), 1500, &[]);
    let json = dir.path().join("drift.json");
    let out = std::process::Command::new(BIN)
        .args(["drift", "--top", "5", "--data"])
        .arg(&input)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| column | PSI | verdict |"), "{stdout}");
    assert!(stdout.contains("history columns"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let columns = report["columns"].as_array().unwrap();
    assert_eq!(report["declarations"], 1500);
    assert!(columns.len() > 100, "{report}");
    let score = columns.iter().find(|c| c["column"] == "score:any").unwrap();
    assert!(score["psi"].as_f64().unwrap() >= 0.0);
}
