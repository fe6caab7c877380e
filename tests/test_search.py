"""`train --time-limit`: the budget, the space, greedy ensemble selection, the leaderboard, one answer
from the ensemble everywhere, and a search killed mid-trial that resumes. The search runs on tiny
budgets here; benchmarks/search.py holds the real ones."""

import base64
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (DEMO_CLASSES, TINY_MODEL, asgi_request, assert_usage_error, assert_user_error, exported_outputs,
                      read_csv, run_cli, start_python, write_csv)

TABULAR = ("price", "seller")
# A search of a few seconds a trial: two epochs of the tiny model, the preset that tries the fewest settings.
TINY_SEARCH = {"preset": "fast", "epochs": 2, "tabular_col": TABULAR, **TINY_MODEL}
LIMIT_S = 50


# === Settings and the pieces, without training ===
@pytest.mark.parametrize("text, seconds", [("20m", 1200.0), ("1h", 3600.0), ("900s", 900.0), ("900", 900.0),
                                           ("1h30m", 5400.0), (90, 90.0)])
def test_time_limit_takes_durations(text, seconds):
    from fusionapp.settings.search import SearchSettings

    assert SearchSettings(time_limit=text).time_limit == seconds


def test_search_flags_are_refused_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--time-limit", "20 minutes")
    assert_usage_error(code, err, "--time-limit", "a duration such as 20m")
    code, _, err = run_cli(capsys, "train", "--preset", "fast")
    assert_usage_error(code, err, "--preset applies with --time-limit")
    code, _, err = run_cli(capsys, "train", "--time-limit", "1m", "--search-storage", "redis://host")
    assert_usage_error(code, err, "--search-storage", "postgresql://")
    config = tmp_path / "search.toml"
    config.write_text('preset = "best"\n')
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert_user_error(code, err, str(config), "preset applies with --time-limit")
    config.write_text('time_limit = "soon"\n')
    code, _, err = run_cli(capsys, "train", "--config", config)
    assert_user_error(code, err, str(config), "time-limit = 'soon'")


def test_greedy_selection_by_hand():
    """Three candidates on 400 rows of two classes, each sure (0.99) of every row but its mistakes: A
    is wrong on 40 rows, B on 80 others, C on 160. B alone is clearly worse than A (so the selection
    starts from A alone), but the mixture of the two halves their mistakes, a clear gain, so B joins;
    C never does. On a quarter of the rows the same gap is noise (two standard errors), so the
    selection starts from A and B in equal shares."""
    from fusionapp.evaluation.calibration import mean_log_loss
    from fusionapp.search.selection import greedy_selection

    def sure(y, wrong):
        chosen = np.where(np.isin(np.arange(len(y)), wrong), 1 - y, y)
        return np.where(np.eye(2)[chosen] > 0, 0.99, 0.01)

    y = np.arange(400) % 2
    a, b, c = sure(y, range(40)), sure(y, range(40, 120)), sure(y, range(120, 280))
    selection = greedy_selection([a, b, c], y, multi_label=False, size=3)
    assert selection.weights == {0: 0.5, 1: 0.5}
    mixed = (a + b) / 2
    assert selection.loss == pytest.approx(mean_log_loss(y, mixed))
    assert selection.loss < mean_log_loss(y, a) / 2
    assert selection.temperature > 0
    assert greedy_selection([a, b, c], y, multi_label=False, size=1).weights == {0: 1.0}
    few = greedy_selection([a[::4], b[::4], c[::4]], y[::4], multi_label=False, size=3)
    assert few.weights == {0: 0.5, 1: 0.5}  # reached from the start, not by an addition
    assert greedy_selection([a[::4], b[::4], c[::4]], y[::4], multi_label=False, size=3, rounds=0).weights \
        == {0: 0.5, 1: 0.5}
    assert greedy_selection([a, b, c], y, multi_label=False, size=3, rounds=0).weights == {0: 1.0}


def test_the_rows_log_losses_average_to_the_log_loss():
    from fusionapp.evaluation.calibration import mean_log_loss
    from fusionapp.search.selection import row_losses

    rng = np.random.default_rng(0)
    sets, probabilities = (rng.random((50, 4)) > 0.6).astype(float), rng.random((50, 4))
    assert row_losses(sets, probabilities).mean() == pytest.approx(mean_log_loss(sets, probabilities))
    y, spread = rng.integers(0, 3, 50), rng.dirichlet([1, 1, 1], 50)
    assert row_losses(y, spread).mean() == pytest.approx(mean_log_loss(y, spread))
    assert row_losses(y, spread)[0] == pytest.approx(-np.log(spread[0, y[0]]))


def test_space_proposes_only_what_applies():
    from fusionapp.search.space import PRESETS, searched_fields, trial_settings
    from fusionapp.settings import RunSettings, apply_flat
    from fusionapp.settings.search import SearchSettings

    base = apply_flat(RunSettings(), {"dropout": 0.1})
    search = SearchSettings(time_limit=60, search_text_backbone=("/models/minilm",))
    proposals = {"text_backbone": "/models/minilm"}

    def suggest(name, rule):
        if name in proposals:
            return proposals[name]
        return rule[0] if isinstance(rule, tuple) else (rule.choices[0] if rule.choices else rule.low)

    balanced = PRESETS["balanced"]
    settings, proposed = trial_settings(base, balanced, search, ("dropout",), ("image", "text"), suggest)
    assert proposed["text_backbone"] == "/models/minilm"
    assert "text_encoder" not in proposed  # a text backbone replaces the model's own encoder
    assert "dropout" not in proposed and settings.model.dropout == 0.1  # given, so kept
    assert {"image_size", "modality_dropout"} <= set(proposed)
    assert settings.training.epochs == balanced.epochs
    # data without images: nothing of the image branch, nor modality dropout, is proposed
    proposals.clear()
    _, proposed = trial_settings(base, balanced, search, ("dropout",), ("text", "tabular"), suggest)
    assert "image_size" not in proposed and "modality_dropout" not in proposed
    assert proposed["text_backbone"] == "" and "text_encoder" in proposed
    # a text backbone given: kept in every trial, the candidates are not searched
    assert "text_backbone" not in searched_fields(balanced, search, ("text_backbone",))


def test_held_out_rows_are_a_third_of_each_class():
    from fusionapp.training.training_rows import held_for_selection

    labels = ["a"] * 300 + ["b"] * 90 + ["c"] * 30
    held, rest = held_for_selection(labels, seed=0, multi_label=False, share=1 / 3)
    assert sorted([*held, *rest]) == list(range(len(labels)))
    for label, count in (("a", 300), ("b", 90), ("c", 30)):
        assert sum(labels[i] == label for i in held) == count // 3
    other, _ = held_for_selection(labels, seed=1, multi_label=False, share=1 / 3)
    assert list(other) != list(held)
    again, _ = held_for_selection(labels, seed=0, multi_label=False, share=1 / 3)
    assert list(again) == list(held)


# === A tiny search, and its ensemble everywhere ===
@pytest.fixture(scope="module")
def search_run(demo_table, tmp_path_factory):
    """(run folder, seconds the call took) of a tiny search on the demo table."""
    from fusionapp import train

    out = tmp_path_factory.mktemp("search") / "run"
    started = time.time()
    train(demo_table, str(out), time_limit=LIMIT_S, verbose=0, started=started, **TINY_SEARCH)
    return str(out), time.time() - started


@pytest.mark.integration
def test_search_keeps_its_time_and_writes_its_leaderboard(search_run):
    run, seconds = search_run
    assert seconds <= LIMIT_S * 1.05
    board = read_csv(os.path.join(run, "leaderboard.csv"))
    assert board[0]["state"] == "complete" and float(board[0]["held_out_log_loss"]) > 0
    assert {row["state"] for row in board} <= {"complete", "pruned", "failed"}
    config = json.load(open(os.path.join(run, "config.json")))
    members = config["ensemble"]["members"]
    assert sum(member["weight"] for member in members) == pytest.approx(1.0, abs=1e-5)
    in_board = {int(row["trial"]): float(row["in_ensemble"]) for row in board}
    assert {member["trial"]: member["weight"] for member in members} == \
        pytest.approx({trial: weight for trial, weight in in_board.items() if weight})
    trial_zero = next(row for row in board if row["trial"] == "0")
    assert float(trial_zero["dropout"]) == 0.3 and float(trial_zero["learning_rate"]) == 0.002  # as given
    assert os.path.exists(os.path.join(run, "search_history.png"))
    for member in members:
        assert os.path.exists(os.path.join(run, member["run"], "model.keras"))
    # Each validation pass reached the trial (the pruning and deadline callback ran inside fit): 0.13
    # to 0.15 dropped the callbacks, so no trial was pruned or stopped at its deadline.
    with sqlite3.connect(os.path.join(run, "search", "study.db")) as db:
        reported = dict(db.execute("SELECT trial_id, COUNT(*) FROM trial_intermediate_values GROUP BY trial_id"))
    assert reported and all(count >= 1 for count in reported.values()), reported


@pytest.mark.integration
def test_info_shows_the_leaderboard(search_run, capsys):
    run, _ = search_run
    code, out, err = run_cli(capsys, "info", run)
    assert code == 0, err
    assert "ensemble     trial" in out and "leaderboard  trial  state" in out
    code, out, err = run_cli(capsys, "info", run, "--json")
    details = json.loads(out)
    assert details["leaderboard"][0]["state"] == "complete" and details["ensemble"]["members"]


@pytest.mark.integration
def test_ensemble_gives_one_answer(search_run, demo_dir, tmp_path, capsys):
    """predict (a table, and one pair through the Python API), evaluate, the server and the exported
    SavedModel answer the same for the same rows, and evaluate equals the search's own test report."""
    from fusionapp import load_model, predict
    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    run, _ = search_run
    assert type(load_model(run)).__name__ == "FusionEnsemble"
    rows = [row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test"][:4]
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    rows[1]["image"] = ""
    table = write_csv(tmp_path / "rows.csv", rows)
    code, _, err = run_cli(capsys, "predict", run, table, "--out", tmp_path / "p.csv")
    assert code == 0, err
    predicted = np.array([[float(row[f"prob_{name}"]) for name in DEMO_CLASSES] for row in read_csv(tmp_path / "p.csv")])
    single = predict(run, image=rows[0]["image"], text=rows[0]["text"], tabular={"price": rows[0]["price"],
                                                                              "seller": rows[0]["seller"]})
    np.testing.assert_allclose([single["probabilities"][name] for name in DEMO_CLASSES], predicted[0], atol=1e-5)
    app = create_app(load_run(run))
    served = []
    for row in rows:
        payload = {"text": row["text"], "tabular": {"price": row["price"], "seller": row["seller"]}}
        if row["image"]:
            payload["image"] = base64.b64encode(open(row["image"], "rb").read()).decode()
        status, answer = asgi_request(app, "POST", "/predict", json.dumps(payload).encode())
        assert status == 200, answer
        served.append([answer["probabilities"][name] for name in DEMO_CLASSES])
    np.testing.assert_allclose(served, predicted, atol=1e-5)
    status, metadata = asgi_request(app, "GET", "/metadata")
    assert status == 200 and metadata["classes"] == DEMO_CLASSES
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "exported")
    assert code == 0, err
    exported = exported_outputs(tmp_path / "exported", rows, tmp_path)
    np.testing.assert_allclose(exported["probabilities"], predicted, atol=1e-5)
    assert exported["missing"][1] == "image"
    code, _, err = run_cli(capsys, "evaluate", run, str(demo_dir / "demo.csv"), "--split", "test", "--out",
                           tmp_path / "report.json")
    assert code == 0, err
    report = json.load(open(tmp_path / "report.json"))
    assert report["macro_f1"] == pytest.approx(json.load(open(os.path.join(run, "test_metrics.json")))["macro_f1"])


# === Killed and resumed ===
SEARCH_SCRIPT = """
import sys
from fusionapp import train
train(sys.argv[1], sys.argv[2], time_limit={limit}, verbose=0, **{settings})
"""


def _study_trials(run):
    with sqlite3.connect(os.path.join(run, "search", "study.db")) as db:
        return dict(db.execute("SELECT number, state FROM trials ORDER BY number"))


@pytest.mark.slow
def test_search_killed_mid_trial_resumes(demo_table, tmp_path):
    """SIGKILL in trial 1's first epoch: the resumed search keeps trial 0 untouched, runs trial 1's
    settings again, and ends with its ensemble."""
    from fusionapp import train

    run = tmp_path / "run"
    settings = {**TINY_SEARCH, "epochs": 1}
    child = start_python(["-c", SEARCH_SCRIPT.format(limit=120, settings=repr(settings)), demo_table, str(run)],
                         signal_at="KILL */trials/0001/resume/epoch0001.keras")
    _, err = child.communicate(timeout=300)
    assert child.returncode == -9, err.decode()[-2000:]
    assert _study_trials(str(run)) == {0: "COMPLETE", 1: "RUNNING"}
    assert not os.path.exists(run / "model.keras")
    kept = os.path.getmtime(run / "trials" / "0000" / "model.keras")
    train(out=str(run), resume=True, time_limit=40, verbose=0)
    states = _study_trials(str(run))
    assert states[0] == "COMPLETE" and states[1] == "FAIL"
    assert os.path.getmtime(run / "trials" / "0000" / "model.keras") == kept
    assert not os.path.exists(run / "trials" / "0001")
    board = {row["trial"]: row for row in read_csv(run / "leaderboard.csv")}
    rerun = board["2"]
    assert rerun["state"] in ("complete", "pruned")
    assert rerun["learning_rate"] == board["1"]["learning_rate"] and rerun["dropout"] == board["1"]["dropout"]
    assert os.path.exists(run / "model.keras")


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_ensemble_explains_its_own_decision(search_run, demo_dir):
    """The explanation is of the ensemble's decision: its class, its probability change when an input
    is blanked, its words; the image map and the tabular figures come from the members."""
    from fusionapp import predict

    run, _ = search_run
    row = next(row for row in read_csv(demo_dir / "demo.csv") if row["split"] == "test")
    pair = {"image": str(demo_dir / row["image"]), "text": row["text"],
            "tabular": {"price": row["price"], "seller": row["seller"]}}
    result = predict(run, explain=True, **pair)
    blanked = predict(run, image=None, text=row["text"], tabular=pair["tabular"])
    explanation = result["explanation"]
    label = result["predicted_label"]
    assert explanation["modalities"]["image"] == pytest.approx(
        blanked["probabilities"][label] - result["probabilities"][label], abs=1e-5)
    assert explanation["text"] and explanation["units"]["text"].startswith("probability of the explained class")
    assert explanation["image"]["heatmap"] and set(explanation["tabular"]) == set(TABULAR)


# === Two processes, one study, on a real PostgreSQL server ===
def _postgres_binaries():
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of Debian's `postgresql` package on a free loopback port, its database's URL."""
    import pwd
    import shutil
    import subprocess

    from conftest import free_port

    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server installed (apt-get install postgresql)")
    run_as = []
    # Not under pytest's own folder, which only its owner may enter: the server may run as another user.
    folder = Path(tempfile.mkdtemp(prefix="fusionapp-postgres-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def pg(*args):
        subprocess.run([*run_as, *args], check=True, capture_output=True, cwd=folder)

    pg(os.path.join(binaries, "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "fusionapp")
    pg(os.path.join(binaries, "pg_ctl"), "-D", str(folder / "data"), "-w", "-l", str(folder / "log"), "-o",
       f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        pg(os.path.join(binaries, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "fusionapp", "search")
        yield f"postgresql://fusionapp@127.0.0.1:{port}/search"
    finally:
        pg(os.path.join(binaries, "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_study(postgres_url, demo_table, tmp_path):
    """A search led by `train --search-storage postgresql://...` and a `search-join` process run
    disjoint trials of one study, and the leader ensembles them all."""
    import subprocess
    import sys

    import optuna

    run = tmp_path / "run"
    # One epoch a trial: a trial is never pruned after its last pass, so the joiner finishes its own.
    flags = ["--preset", "fast", "--epochs", "1", "--tabular-col", "price", "--tabular-col", "seller",
             *[part for name, value in TINY_MODEL.items()
               for part in (f"--{name.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, tuple)
                            else str(value))]]
    leader = subprocess.Popen([sys.executable, "-m", "fusionapp", "train", demo_table, "--time-limit", "70",
                               "--search-storage", postgres_url, "--out", str(run), *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in leader.stdout:  # the leader says so once its search.json is written and its study made
        if line.startswith("Searching"):
            break
    joiner = subprocess.run([sys.executable, "-m", "fusionapp", "search-join", str(run), "--search-storage",
                             postgres_url], capture_output=True, text=True, timeout=300)
    _, err = leader.communicate(timeout=300)
    assert leader.returncode == 0, err[-3000:]
    assert joiner.returncode == 0, joiner.stderr[-3000:]
    name = json.load(open(run / "search" / "search.json"))["study"]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    finished = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    processes = {trial.user_attrs["process"] for trial in study.trials if "process" in trial.user_attrs}
    assert len(processes) == 2, processes
    assert len({trial.user_attrs["run"] for trial in study.trials}) == len(study.trials)
    members = json.load(open(run / "config.json"))["ensemble"]["members"]
    assert {member["trial"] for member in members} <= {trial.number for trial in finished}
    assert len(read_csv(run / "leaderboard.csv")) == len(study.trials)
    assert int(joiner.stdout.split("Finished ")[1].split()[0]) >= 1, joiner.stdout  # a trial of its own, finished


def test_first_trials_are_the_settings_as_given_then_each_candidate_model():
    """Trial 0 is enqueued with the default settings as they resolve (image size "auto" -> 64), each a
    value Optuna's distributions accept; then one trial for each candidate text model named, the
    same settings with that model (the text encoder, which it replaces, not proposed)."""
    from fusionapp.search.run_search import _first_trials
    from fusionapp.search.space import PRESETS
    from fusionapp.search.trials import SearchContext
    from fusionapp.settings import RunSettings, option_of, setting_field
    from fusionapp.settings.search import SearchSettings

    search = SearchSettings(time_limit=60, search_text_backbone=("/models/a", "/models/b"))
    context = SearchContext("data.csv", "run", RunSettings(), (), search, PRESETS["balanced"],
                            None, None, None, ("image", "text"), None, None, print)
    given, *candidates = _first_trials(context)
    assert given["image_size"] == 64 and given["learning_rate"] == 0.002 and given["text_encoder"] == "bag"
    assert given["text_backbone"] == ""
    for name, value in given.items():
        rule = option_of(setting_field(name)).search
        assert name == "text_backbone" or (value in rule.choices if rule.choices else rule.low <= value <= rule.high)
    assert [values["text_backbone"] for values in candidates] == ["/models/a", "/models/b"]
    for values in candidates:
        assert "text_encoder" not in values
        assert {name: value for name, value in values.items() if name != "text_backbone"} == \
            {name: value for name, value in given.items() if name not in ("text_backbone", "text_encoder")}
    asked = SearchContext("data.csv", "run", RunSettings(), ("text_backbone",), search, PRESETS["balanced"],
                          None, None, None, ("image", "text"), None, None, print)
    assert len(_first_trials(asked)) == 1  # a model given is kept in every trial, not a candidate


def test_a_trial_is_not_pruned_after_its_last_epoch():
    """Pruning saves the epochs left; after the last there are none, and the finished trial may serve
    the ensemble. Every pass is still reported."""
    import optuna

    from fusionapp.search.trials import TrialCallback

    class Trial:
        reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    callback = TrialCallback(Trial(), deadline=float("inf"))
    callback.set_params({"epochs": 2})
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end(0, {"val_loss": 0.9})
    callback.on_epoch_end(1, {"val_loss": 0.8})
    assert Trial.reported == [(1, 0.9), (2, 0.8)]
