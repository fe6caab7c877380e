"""What an explanation costs against the prediction it explains, for one pair, model loaded.

    python benchmarks/explain.py RUN DATA [--rows 30]

Times, on the first --rows rows of DATA (each alone, as `predict --image --text` and the server
see them), one prediction (`predict_examples` on the row) and one explanation (`explain_row`),
after one untimed call of each; prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("data")
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args(argv)

    from fusionapp.runs.load import load_run
    from fusionapp.inference.explain import explain_row
    from fusionapp.inference.raw_inference import predict_examples
    from fusionapp.inference.run_rows import iter_rows_for_run

    run = load_run(args.run)
    examples, _ = next(iter_rows_for_run(run, args.data, None, need_label=False))
    rows = [examples.subset([i]) for i in range(min(args.rows, len(examples)))]
    predict_examples(run.model, rows[0])
    explain_row(run.model, rows[0])
    timings = {"predict_ms": [], "explain_ms": []}
    for row in rows:
        started = time.perf_counter()
        predict_examples(run.model, row)
        timings["predict_ms"].append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        explain_row(run.model, row)
        timings["explain_ms"].append(1000 * (time.perf_counter() - started))
    figures = {name: round(statistics.median(values), 2) for name, values in timings.items()}
    figures["ratio"] = round(figures["explain_ms"] / figures["predict_ms"], 2)
    figures["rows"] = len(rows)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
