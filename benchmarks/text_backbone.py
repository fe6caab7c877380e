"""Pretrained text backbones on this machine, with random weights of the real shapes (no pretrained
weights can be reached here, so this measures cost, never accuracy):

1. texts embedded per second by BERT-base and XLM-RoBERTa-base (the frozen pass the feature cache
   runs once per text) at 64 and 128 tokens, float32 and mixed bfloat16, batches of 32;
2. the epoch speed-up the text feature cache gives: one epoch of a text-only model on tokens through
   the frozen backbone against one on its cached vectors;
3. with --mvsa TABLE: the peak memory and stage times of `fusionapp train` on MVSA-Single with a
   frozen BERT-base (its preset folder written to a temporary folder first).

    python benchmarks/text_backbone.py [--mvsa ../shared/data/mvsa_single/manifest.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string
import subprocess
import sys
import tempfile
import time

import numpy as np

BASE = {"num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072, "max_sequence_length": 512}
VOCABULARY = {"bert_base": 30522, "xlm_roberta_base": 250002}


def base_backbone(family: str, dtype: str):
    import keras_hub

    cls = keras_hub.models.BertBackbone if family == "bert_base" else keras_hub.models.XLMRobertaBackbone
    return cls(vocabulary_size=VOCABULARY[family], dtype=dtype, **BASE)


def extractor(backbone, length: int):
    """Token ids and mask -> the mean-pooled vector, as fusionapp's text branch computes it."""
    import keras

    from fusionapp.model.pretrained_text import backbone_text_features

    ids = keras.Input((length,), dtype="int32")
    mask = keras.Input((length,), dtype="int32")
    return keras.Model([ids, mask], backbone_text_features(ids, mask, backbone))


def texts_per_second(family: str, length: int, dtype: str, batches: int, batch_size: int = 32) -> float:
    model = extractor(base_backbone(family, dtype), length)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 30000, (batch_size, length)).astype("int32")
    mask = np.ones((batch_size, length), "int32")
    mask[:, length // 2:] = 0  # half padding, as short texts have
    model.predict_on_batch([ids, mask])  # compile
    started = time.perf_counter()
    for _ in range(batches):
        model.predict_on_batch([ids, mask])
    return batches * batch_size / (time.perf_counter() - started)


def cache_speedup(length: int, rows: int = 256, batch_size: int = 32) -> dict:
    """Seconds of one training epoch on tokens through a frozen BERT-base, and on cached vectors."""
    import dataclasses

    from fusionapp.model import NetworkSpec, build_classifier
    from fusionapp.preprocessing.configs import TextInput
    from fusionapp.settings import ModelSettings
    import keras

    config = json.dumps(keras.saving.serialize_keras_object(base_backbone("bert_base", "float32")))
    settings = ModelSettings(modalities=("text",), text_backbone="bert", wide=False, calibrate=False)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, rows)
    base = NetworkSpec(3, 64, TextInput.BACKBONE, sequence_length=length, text_backbone=config)
    data = {"tokens": {"text": rng.integers(5, 30000, (rows, length)).astype("int32"),
                       "text_mask": np.ones((rows, length), "int32")},
            "features": {"text": rng.normal(size=(rows, 768)).astype("float32")}}
    seconds = {}
    for name, spec in (("tokens", base), ("features", dataclasses.replace(base, text_features=768))):
        model = build_classifier(settings, spec)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(data[name], labels, batch_size=batch_size, epochs=1, verbose=0)  # compile and warm up
        started = time.perf_counter()
        model.fit(data[name], labels, batch_size=batch_size, epochs=1, verbose=0)
        seconds[name] = time.perf_counter() - started
    return {"rows": rows, "sequence_length": length, "epoch_s_tokens": round(seconds["tokens"], 2),
            "epoch_s_cached": round(seconds["features"], 3),
            "speedup": round(seconds["tokens"] / seconds["features"], 1)}


def bert_base_preset(folder: str) -> str:
    """A BERT-base preset folder with random weights and a WordPiece vocabulary of the real size."""
    import keras_hub

    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + pieces + [f"##{p}" for p in pieces]
    vocabulary += [f"[unused{i}]" for i in range(VOCABULARY["bert_base"] - len(vocabulary))]
    base_backbone("bert_base", "float32").save_to_preset(folder)
    keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True).save_to_preset(folder)
    return folder


def mvsa_run(table: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        preset = bert_base_preset(os.path.join(work, "bert_base"))
        out = os.path.join(work, "run")
        env = {**os.environ, "FUSIONAPP_CACHE_DIR": os.path.join(work, "cache")}
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "fusionapp", "train", table, "--out", out,
                               "--text-backbone", preset, "--epochs", str(epochs)],
                              capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024**2
        config = json.load(open(os.path.join(out, "config.json")))
        return {"table": table, "epochs": epochs, "seconds": round(seconds, 1), "peak_rss_gb": round(peak, 2),
                "stage_seconds": config.get("stage_seconds"),
                "texts_computed": config["text_backbone"]["feature_cache"]["texts_computed"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4, help="timed batches of 32 texts per figure")
    parser.add_argument("--mvsa", help="MVSA-Single's table: also time a frozen BERT-base run on it")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/text_backbone.json")
    args = parser.parse_args(argv)
    results = {"texts_per_second": []}
    for family in VOCABULARY:
        for length in (64, 128):
            for dtype in ("float32", "mixed_bfloat16"):
                rate = texts_per_second(family, length, dtype, args.batches)
                results["texts_per_second"].append({"model": family, "sequence_length": length, "dtype": dtype,
                                                    "texts_per_s": round(rate, 1)})
                print(f"{family:<17} {length:>4} tokens {dtype:<15} {rate:7.1f} texts/s", flush=True)
    results["cache"] = cache_speedup(64)
    print(f"one epoch of {results['cache']['rows']} rows, BERT-base at 64 tokens: {results['cache']['epoch_s_tokens']} s "
          f"through the frozen backbone, {results['cache']['epoch_s_cached']} s on cached vectors "
          f"({results['cache']['speedup']}x)", flush=True)
    if args.mvsa:
        results["mvsa"] = mvsa_run(args.mvsa, args.epochs)
        print(f"MVSA-Single, frozen BERT-base, {args.epochs} epochs: {results['mvsa']['seconds']} s, peak RSS "
              f"{results['mvsa']['peak_rss_gb']} GB, stages {results['mvsa']['stage_seconds']}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
