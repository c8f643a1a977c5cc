#!/usr/bin/env python3
"""parcel-risk side by side with LightGBM and XGBoost on the KCS history.

    python3 scripts/kcs/compare.py [--kcs ../shared/data/kcs] [--work target/kcs]

Trains on the 2020 rows (df_syn_train_eng.csv) and ranks the 2021-01..03 rows
(df_syn_valid_eng.csv) with each tool, then prints precision among the top
1/2/5/10 % and the AUC of each, computed here the same way for all (ties in
a score keep file order).

- parcel-risk: the KCS rows converted to its CSV format (to_parcel_risk.py),
  `parcel-risk train`, then `parcel-risk rescore` of the 2021 rows (their
  labels stripped first, so nothing but the declarations reaches it); the
  ranking is `overall_score`.
- LightGBM and XGBoost: the same columns the conversion hands parcel-risk
  (every ID and code, as categorical features with the tools' native
  handling; tax rate, mass and price as numbers; HS4/HS2 and the log price
  per kg derived for them), default-ish settings a data scientist would start
  from (300 trees, learning rate 0.05). Nothing is tuned on the 2021 rows.

Installs lightgbm, xgboost, pandas and scikit-learn with pip when missing
(not needed by `cargo test`). Builds parcel-risk in release mode.
"""

import argparse
import csv
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARES = (0.01, 0.02, 0.05, 0.10)
PACKAGES = {"lightgbm": "lightgbm", "xgboost": "xgboost", "pandas": "pandas", "sklearn": "scikit-learn"}


def ensure_packages():
    missing = [pip for mod, pip in PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print(f"installing {' '.join(missing)} with pip", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


def run(cmd, **kw):
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def precision_at(scores, labels, share):
    import numpy as np

    k = max(1, int(len(scores) * share))
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.asarray(labels)[order].mean())


def metrics(scores, labels):
    from sklearn.metrics import roc_auc_score

    return [precision_at(scores, labels, s) for s in SHARES] + [float(roc_auc_score(labels, scores))]


def parcel_risk_scores(kcs, work):
    binary = os.path.join(ROOT, "target", "release", "parcel-risk")
    run(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    train_csv = os.path.join(work, "train.csv")
    valid_csv = os.path.join(work, "valid.csv")
    converter = os.path.join(HERE, "to_parcel_risk.py")
    run([sys.executable, converter, os.path.join(kcs, "df_syn_train_eng.csv"), train_csv])
    run([sys.executable, converter, os.path.join(kcs, "df_syn_valid_eng.csv"), valid_csv])
    # The 2021 declarations without their labels.
    unlabelled = os.path.join(work, "valid-declarations.csv")
    with open(valid_csv, newline="") as src, open(unlabelled, "w", newline="") as dst:
        reader = csv.DictReader(src)
        columns = [c for c in reader.fieldnames if c not in ("inspection_id", "selection_reason", "outcome")]
        writer = csv.DictWriter(dst, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in reader:
            writer.writerow(row)
    model = os.path.join(work, "model")
    run([binary, "train", "--data", train_csv, "--out", model, "--force", "--version", "kcs-2020"],
        stderr=open(os.path.join(work, "train.log"), "w"))
    scores_csv = os.path.join(work, "valid-scores.csv")
    run([binary, "rescore", "--input", unlabelled, "--model", model, "--output", scores_csv],
        stderr=open(os.path.join(work, "rescore.log"), "w"))
    with open(scores_csv, newline="") as f:
        by_id = {row["declaration_id"]: float(row["overall_score"]) for row in csv.DictReader(f)}
    return by_id


def anchor_frames(kcs):
    import numpy as np
    import pandas as pd

    train = pd.read_csv(os.path.join(kcs, "df_syn_train_eng.csv"))
    valid = pd.read_csv(os.path.join(kcs, "df_syn_valid_eng.csv"))
    categorical = [
        "Office ID", "Process Type", "Import Type", "Import Use", "Payment Type",
        "Mode of Transport", "Declarant ID", "Importer ID", "Seller ID", "Courier ID",
        "HS6 Code", "Country of Departure", "Country of Origin", "Tax Type",
        "Country of Origin Indicator", "HS4", "HS2",
    ]
    numeric = ["Tax Rate", "Net Mass", "Item Price", "log price per kg"]

    def features(df):
        x = df.copy()
        x["HS4"] = x["HS6 Code"] // 100
        x["HS2"] = x["HS6 Code"] // 10000
        x["log price per kg"] = np.log1p(x["Item Price"]) - np.log1p(x["Net Mass"])
        return x[categorical + numeric].copy()

    x_train, x_valid = features(train), features(valid)
    for column in categorical:
        # Categories from the training rows only: a 2021 value unseen in 2020
        # is missing to the tools, as it would be in production.
        known = pd.Categorical(x_train[column].astype(str))
        x_train[column] = pd.Categorical(x_train[column].astype(str), categories=known.categories)
        # Unseen values made missing before the Categorical is built (pandas
        # deprecates building one from values outside its categories).
        valid_text = x_valid[column].astype(str)
        valid_text = valid_text.where(valid_text.isin(known.categories))
        x_valid[column] = pd.Categorical(valid_text, categories=known.categories)
    return x_train, train["Fraud"].values, x_valid, valid


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kcs", default=os.path.join(ROOT, "..", "shared", "data", "kcs"))
    parser.add_argument("--work", default=os.path.join(ROOT, "target", "kcs"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    ensure_packages()
    import lightgbm
    import xgboost

    os.makedirs(args.work, exist_ok=True)
    x_train, y_train, x_valid, valid = anchor_frames(args.kcs)
    labels = valid["Fraud"].values
    rows = []

    ours = parcel_risk_scores(args.kcs, args.work)
    ids = [f"KCS-{i}" for i in valid["Declaration ID"]]
    missing = [i for i in ids if i not in ours]
    if missing:
        sys.exit(f"parcel-risk scored {len(ours)} of {len(ids)} rows; missing e.g. {missing[:3]}")
    rows.append(("parcel-risk", metrics([ours[i] for i in ids], labels)))

    lgbm = lightgbm.LGBMClassifier(
        n_estimators=300, learning_rate=0.05, num_leaves=63, random_state=args.seed, verbose=-1
    ).fit(x_train, y_train)
    rows.append(("LightGBM", metrics(lgbm.predict_proba(x_valid)[:, 1], labels)))

    xgbm = xgboost.XGBClassifier(
        n_estimators=300, learning_rate=0.05, max_depth=6, tree_method="hist",
        enable_categorical=True, random_state=args.seed,
    ).fit(x_train, y_train)
    rows.append(("XGBoost", metrics(xgbm.predict_proba(x_valid)[:, 1], labels)))

    rows.append(("random (expected)", [float(labels.mean())] * len(SHARES) + [0.5]))
    print(f"KCS: train 2020 ({len(y_train)} rows), evaluate 2021-01..03 ({len(labels)} rows, "
          f"{labels.mean():.3f} fraudulent)\n")
    print("| ranker | P@1% | P@2% | P@5% | P@10% | AUC |")
    print("|---|---|---|---|---|---|")
    for name, values in rows:
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    main()
