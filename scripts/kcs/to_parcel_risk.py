#!/usr/bin/env python3
"""Converts Korea Customs Service import declarations (the KCS synthetic files,
one row per declaration) into parcel-risk's CSV format, labels included.

    python3 scripts/kcs/to_parcel_risk.py ../shared/data/kcs/df_syn_train_eng.csv kcs-train.csv

Standard library only. What maps where, and why:

- every row is a full declaration (dataset H1), one goods item, lodged at
  midnight UTC of its date;
- Importer ID, Seller ID and Declarant ID become the parties' identification
  numbers (the data has no names or addresses); the seller's country is the
  country of departure, the importer's Korea;
- HS6 Code (zero-padded), Item Price in KRW, Net Mass in grams and the
  country of origin fill the goods item;
- every other column (office, process/import type, import use, payment
  type, mode of transport, courier, tax rate, tax type, origin indicator,
  country of departure) goes, unchanged, to the `attributes` map: parcel-risk
  learns them as they are;
- Fraud (an attempt to reduce the duty) is the inspection outcome:
  NON_COMPLIANT or COMPLIANT. It names no fraud kind, so no kind is given:
  only the `any` target has labels. Every row was inspected by the KCS's
  risk rules, so the selection reason is RISK_SCORE. Critical Fraud is a
  label too (a threat to safety), so it is left out rather than leak into
  the features.
"""

import csv
import sys

ATTRIBUTE_COLUMNS = {
    "Office ID": "office_id",
    "Process Type": "process_type",
    "Import Type": "import_type",
    "Import Use": "import_use",
    "Payment Type": "payment_type",
    "Mode of Transport": "mode_of_transport",
    "Courier ID": "courier_id",
    "Tax Rate": "tax_rate",
    "Tax Type": "tax_type",
    "Country of Origin Indicator": "origin_indicator",
    "Country of Departure": "departure_country",
}

OUTPUT_COLUMNS = [
    "declaration_id",
    "lrn",
    "dataset",
    "lodged_at",
    "exporter_id",
    "exporter_country",
    "importer_id",
    "importer_country",
    "declarant_id",
    "goods_item_number",
    "hs6",
    "value_currency",
    "value_minor",
    "gross_mass_g",
    "country_of_origin",
    *ATTRIBUTE_COLUMNS.values(),
    "inspection_id",
    "selection_reason",
    "outcome",
]


def country(code):
    """ISO alpha-2 or empty (the data has a few non-codes)."""
    code = code.strip().upper()
    return code if len(code) == 2 and code.isalpha() else ""


def convert_row(row):
    declaration_id = row["Declaration ID"].strip()
    out = {
        "declaration_id": f"KCS-{declaration_id}",
        "lrn": declaration_id,
        "dataset": "H1",
        "lodged_at": f"{row['Date'].strip()}T00:00:00Z",
        "exporter_id": row["Seller ID"].strip(),
        "exporter_country": country(row["Country of Departure"]),
        "importer_id": row["Importer ID"].strip(),
        "importer_country": "KR",
        "declarant_id": row["Declarant ID"].strip(),
        "goods_item_number": "1",
        "hs6": row["HS6 Code"].strip().split(".")[0].zfill(6),
        "value_currency": "KRW",
        "value_minor": str(round(float(row["Item Price"] or 0))),
        "gross_mass_g": str(round(float(row["Net Mass"] or 0) * 1000)),
        "country_of_origin": country(row["Country of Origin"]),
        "inspection_id": f"KCS-{declaration_id}",
        "selection_reason": "RISK_SCORE",
        "outcome": "NON_COMPLIANT" if row["Fraud"].strip() == "1" else "COMPLIANT",
    }
    for source, name in ATTRIBUTE_COLUMNS.items():
        out[name] = row[source].strip()
    # About 10 % of rows name no seller. A party must be named or identified,
    # so these share the ID "UNKNOWN": one entity whose record is that of
    # unnamed sellers, as a missing value is one category to a tree learner.
    if not out["exporter_id"]:
        out["exporter_id"] = "UNKNOWN"
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1], newline="") as src, open(argv[2], "w", newline="") as dst:
        writer = csv.DictWriter(dst, fieldnames=OUTPUT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in csv.DictReader(src):
            writer.writerow(convert_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
