"""Slow tests on the real MVSA-Single data set; skipped when it is not on this machine.

Point FUSIONAPP_REAL_DATA at its manifest.csv, or keep the project's ../shared/data beside the repo.
Run with `python -m pytest -m slow`.
"""

import json
import os

import pytest

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mvsa_single", "manifest.csv")
REAL_DATA = os.environ.get("FUSIONAPP_REAL_DATA", DEFAULT)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(REAL_DATA), reason=f"real data not found at {REAL_DATA}")]


def test_quality_benchmark_at_reduced_size(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import quality

    out = tmp_path / "quality.json"
    summary = quality.main([REAL_DATA, "--seeds", "1", "--rows", "1500", "--set", "epochs=3",
                            "--models", "fused,text-only,tfidf-logreg", "--out", str(out)])
    saved = json.load(open(out))
    assert set(summary) == {"fused", "text-only", "tfidf-logreg"} == set(saved["summary"])
    for row in summary.values():
        assert 0.3 < row["accuracy"] <= 1.0 and 0.0 < row["macro_f1"] <= 1.0
    # With three epochs on a third of the data the fused model must at least beat chance (1/3).
    assert summary["fused"]["balanced_accuracy"] > 0.34


def test_real_data_trains_evaluates_and_ablates(tmp_path, capsys):
    from conftest import run_cli

    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", REAL_DATA, "--out", run, "--epochs", 2)
    assert code == 0, err
    code, out, err = run_cli(capsys, "evaluate", run, REAL_DATA, "--split", "test", "--ablate",
                             "--out", tmp_path / "r.json", "--plots", tmp_path / "plots")
    assert code == 0, err
    report = json.load(open(tmp_path / "r.json"))
    assert report["n_examples"] == 452 and set(report["ablation"]) == {"image", "text"}
