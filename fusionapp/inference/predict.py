"""`fusionapp predict`: a trained run + new image-text pairs -> labels and class probabilities."""

from __future__ import annotations

import base64
import sys
from contextlib import ExitStack

import numpy as np

from fusionapp.data.examples import BadRow, Examples
from fusionapp.data.frames import as_frame, is_frame
from fusionapp.data.sharding import Shard
from fusionapp.errors import FusionError, UsageProblem
from fusionapp.inference.answers import pair_result, prediction_table
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.console import show_progress
from fusionapp.inference.run_rows import check_rows, column_renames, iter_rows_for_run, run_columns
from fusionapp.runs import files, load
from fusionapp.settings import NotApplicable, prediction_settings
from fusionapp.inference.explain import explain_examples
from fusionapp.inference.explain_files import explanations_writer, write_explanations
from fusionapp.inference.writers import TableWriter


def predict(model: str, data: str | None = None, *, image: str | None = None, text: str | None = None,
            tabular: dict | None = None, split: str | None = None, out: str | None = None,
            top_k: int | None = None, on_bad_row: str | None = None, batch_size: int | None = None,
            image_root: str | None = None, explain: bool = False, explain_dir: str | None = None, verbose: int = 1,
            shard: str | None = None, heatmap_out: str | None = None,
            **column_overrides: str | None) -> dict | list[dict] | str:
    """Label one pair, or every row of a table, with a trained run.

    Give `data` (a table) or a single pair (`image`, `text`, `tabular`), not both. A table is read
    with the run's own column names and image root unless others are given; rows that cannot be
    read are returned (or written) with an `error` and no prediction.

    Args:
        model: A run folder written by `train`, or the `model.keras` inside it.
        data: A table (CSV, TSV, JSON Lines, Parquet; a folder or glob of shards), `tfds:NAME[:SPLIT]`,
            or a pandas DataFrame or pyarrow Table (image cells: paths, bytes, PIL images or arrays).
        image: A single pair's image file.
        text: A single pair's text.
        tabular: A single pair's tabular values by column name.
        split: A table's rows of this split only.
        out: Write a table's predictions here, a chunk of rows at a time: CSV, Parquet for a
            `.parquet` name, "-" for CSV on stdout.
        top_k: Also list the K likeliest labels; None: 1.
        on_bad_row: "skip" or "error"; None: the default of fusionapp.settings.PredictionSettings.
        batch_size: Rows per prediction batch; None: the default of PredictionSettings.
        image_root: Folder relative image paths resolve against; None: the run's own, else the
            table's folder.
        explain: Add an `explanation` to a single pair's answer (fusionapp.inference.explain).
        heatmap_out: With `explain`, also write a single pair's image heat map to this PNG file.
        explain_dir: Write a table's explanations here (a heat map per row and explanations.csv).
        verbose: 0 prints nothing; 1 prints a summary line to stderr.
        shard: "K/N": only rows K, K+N, K+2N, ... (1-based), this machine's share of N.
        **column_overrides: Columns named otherwise in this table: `image_col`, `text_col`,
            `label_col`, `split_col`, `id_col`.

    Returns:
        A single pair's answer as a dict (`predicted_label`, `confidence`, `probabilities`,
            `missing`, ...); a table's rows as a list of dicts (for a DataFrame, a DataFrame with its
            index; for a pyarrow Table, a pyarrow Table); or `out` when the rows were written there.

    Raises:
        fusionapp.errors.FusionError: A missing or unreadable run, table, column or value, in one line.
        fusionapp.settings.NotApplicable: An option that does not fit the request (a table's
            option with a single pair).
    """
    options = prediction_settings(top_k=top_k, on_bad_row=on_bad_row, batch_size=batch_size)
    renames = column_renames(column_overrides)
    check_predict_request(data, image=image, text=text, tabular=tabular, explain=explain, heatmap_out=heatmap_out,
                          table_options={"split": split, "out": out, "shard": shard, "on_bad_row": on_bad_row,
                                         "batch_size": batch_size, "image_root": image_root,
                                         "explain_dir": explain_dir, **column_overrides})
    if data is None:
        result = predict_pair(load.load_run(model), image=image, text=text, tabular=tabular or {},
                              top_k=options.top_k, explain=explain)
        if heatmap_out:
            write_heatmap(result["explanation"], heatmap_out)
        return result
    run = load.load_run(model)
    return predict_table(run, data, split=split, out=out, options=options, image_root=image_root,
                         explain_dir=explain_dir, verbose=verbose, renames=renames, shard=Shard.parse(shard))


def check_predict_request(data, *, image, text, tabular, explain: bool, table_options: dict,
                          as_json: bool = False, heatmap_out: str | None = None) -> None:
    """A NotApplicable (a usage error on the command line) for what does not fit together: a table
    option with a single pair, a single pair's option with a table, both or neither."""
    if data is None:
        if image is None and text is None and not tabular:
            raise UsageProblem("give DATA (a table), or a single pair with --image / --text / --tabular")
        given = [name for name, value in table_options.items() if value is not None]
        if given:
            raise NotApplicable(given[0], "to a table (DATA), not to a single pair")
        if heatmap_out and not explain:
            raise NotApplicable("heatmap_out", "with --explain, whose heat map it writes")
        return
    if image is not None or text is not None or tabular:
        raise NotApplicable("image" if image is not None else "text" if text is not None else "tabular",
                            "to a single pair, not with DATA (a table)")
    if explain or heatmap_out:
        raise NotApplicable("explain" if explain else "heatmap_out",
                            "to a single pair; --explain-dir DIR explains a table's rows, with a heat map each")
    if as_json:
        raise NotApplicable("json", "to a single pair's answer; a table's predictions go to --out (CSV or Parquet)")


def write_heatmap(explanation: dict, path: str) -> str:
    """A single pair's image heat map, as the PNG file `path` (written atomically)."""
    heatmap = (explanation.get("image") or {}).get("heatmap")
    if not heatmap:
        raise FusionError(f"--heatmap-out {path}: this answer has no heat map (the pair has no image, or the model's "
                          "image branch has no feature map to show)")
    with files.atomic_path(path, suffix=".png") as temporary:
        with open(temporary, "wb") as handle:
            handle.write(base64.b64decode(heatmap))
    return path


def predict_table(run, data: str, *, split, out, options, image_root, explain_dir, verbose: int, renames: dict,
                  shard=None):
    """Every row of `data`, read, checked, predicted and written a chunk at a time: memory follows
    the chunk, not the table. Returns the rows as dicts when there is no `out` (none: "-", stdout)."""
    collected = [] if out is None else None
    # An in-memory table's predictions come back as a table of its kind, not as CSV on stdout.
    shown = None if is_frame(data) else "-" if verbose else None
    predicted = failed = 0
    heat_maps = set()
    with ExitStack() as stack:
        writer = stack.enter_context(TableWriter(out if out is not None else shown))
        explained = stack.enter_context(explanations_writer(explain_dir)) if explain_dir else None
        for examples, bad_rows in iter_rows_for_run(run, data, split, need_label=False, column_overrides=renames,
                                                    image_root=image_root, shard=shard):
            if bad_rows and options.on_bad_row == "error":
                raise FusionError(bad_rows[0].message(examples.source))
            errors = {row.row: row.reason for row in bad_rows}
            good = [i for i, row in enumerate(examples.row_numbers) if int(row) not in errors]
            # A progress bar would be mixed into the CSV when that goes to stdout.
            predictions = predict_examples(run.model, examples.subset(good), options.batch_size,
                                           progress=show_progress(verbose) and bool(out) and out != "-")
            header, rows = prediction_table(examples, predictions, run.preprocessor.class_names, rows=good,
                                            errors=errors, top_k=options.top_k, label_sep=run.preprocessor.label_sep)
            if explained is not None:
                write_explanations(run.model, examples.subset(good), explain_dir, explained, heat_maps)
            writer.write(header, rows)
            if collected is not None:
                collected.extend(dict(zip(header, row)) for row in rows)
            predicted, failed = predicted + len(good), failed + len(errors)
    if verbose:
        print(f"Predicted {predicted} rows" + (f", {failed} could not be read" if failed else "")
              + (f"; wrote {out}" if out and out != "-" else ""), file=sys.stderr)
    if collected is None:
        return out
    return as_frame(collected, data) if is_frame(data) else collected


def predict_pair(run, image: str | None, text: str | None, tabular: dict, top_k: int = 1,
                 explain: bool = False) -> dict:
    """One image-text(-tabular) pair given directly -> {predicted_label, confidence, probabilities,
    missing[, top_k][, explanation]}."""
    columns = run_columns(run)
    kinds = run.preprocessor.tabular_kinds
    unknown = sorted(set(tabular) - set(kinds))
    if unknown:
        raise FusionError(f"--tabular {unknown[0]}=...: this model has no tabular column '{unknown[0]}'"
                          + (f" (its columns: {', '.join(kinds)})" if kinds else " (it uses no tabular columns)"))
    examples = Examples(source="input", row_numbers=np.array([1]), ids=["1"],
                        images=[image or ""] if "image" in run.modalities else None, images_are_files=True,
                        texts=[text or ""] if "text" in run.modalities else None,
                        tabular={name: [tabular.get(name, "")] for name in kinds}, labels=None, splits=None)
    bad_rows = check_rows(run, examples, columns, need_label=False)
    if bad_rows:
        raise FusionError(_pair_message(bad_rows[0], columns))
    result = pair_result(predict_examples(run.model, examples), 0, run.preprocessor.class_names, top_k)
    if explain:
        result["explanation"] = explain_examples(run.model, examples)[0]
    return result


def _pair_message(bad_row: BadRow, columns) -> str:
    flags = {columns.image: "--image", columns.text: "--text"}
    flag = flags.get(bad_row.column, f"--tabular {bad_row.column}")
    return f"{flag}: {bad_row.reason}"
