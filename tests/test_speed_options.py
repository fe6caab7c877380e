"""--cache, --precision and --jit change how training runs, not what it produces."""

import json
import os

import keras
import pytest

from conftest import TINY_MODEL


# Two trainings each (13 s): with -m slow; tests/test_pipeline.py holds the cache's order by default.
@pytest.mark.parametrize("cache", [pytest.param("memory", marks=pytest.mark.slow),
                                   pytest.param("disk", marks=pytest.mark.slow)])
def test_cached_images_give_the_same_run(cache, demo_table, tmp_path):
    from fusionapp import train

    common = dict(epochs=2, seed=3, verbose=0, tabular_col=("price", "seller"), **TINY_MODEL)
    plain = train(demo_table, str(tmp_path / "plain"), **common)
    cached = train(demo_table, str(tmp_path / "cached"), cache=cache, **common)
    assert open(os.path.join(plain, "metrics.json")).read() == open(os.path.join(cached, "metrics.json")).read()
    assert not os.path.exists(os.path.join(cached, "cache"))  # removed once training ends


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
@pytest.mark.parametrize("precision", ["mixed_bfloat16"])
def test_mixed_precision_trains_and_restores_the_global_policy(precision, demo_table, tmp_path):
    import warnings

    from fusionapp import evaluate, train
    from fusionapp.runs.load import load_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(demo_table, str(tmp_path / "run"), epochs=1, verbose=0, precision=precision, jit=True,
                    **TINY_MODEL)
    assert not [w for w in caught if "jit_compile" in str(w.message)]  # --jit really compiled
    assert keras.config.dtype_policy().name == "float32"
    settings = json.load(open(os.path.join(run, "config.json")))["settings"]["training"]
    assert settings["precision"] == precision and settings["jit"] is True
    # The saved model computes in float32, and scores exactly as the run's own test figures say.
    assert {layer.dtype_policy.name for layer in load_run(run).model.layers if layer.weights} == {"float32"}
    report = evaluate(run, demo_table, split="test", verbose=0)
    assert report == json.load(open(os.path.join(run, "test_metrics.json")))


def test_unknown_precision_is_refused(demo_table, tmp_path):
    from fusionapp import train
    from fusionapp.errors import FusionError

    with pytest.raises(FusionError, match="precision='float8': must be one of auto, float32"):
        train(demo_table, str(tmp_path / "run"), precision="float8", verbose=0)


@pytest.mark.parametrize("flags, native", [
    ("fpu vme avx512f avx512_bf16 avx512_vnni", True),
    ("fpu vme amx_bf16 amx_tile", True),
    ("fpu vme avx2 avx512f", False),
])
def test_auto_precision_uses_bfloat16_only_where_the_cpu_has_it(flags, native, tmp_path):
    from fusionapp.training.auto_precision import cpu_has_native_bfloat16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    assert cpu_has_native_bfloat16(str(cpuinfo)) is native
    assert cpu_has_native_bfloat16(str(tmp_path / "absent")) is False


def test_auto_precision_is_recorded_as_what_ran(trained_run):
    import tensorflow as tf

    from fusionapp.training.auto_precision import cpu_has_native_bfloat16

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("on a GPU, auto depends on its compute capability")
    settings = json.load(open(os.path.join(trained_run, "config.json")))["settings"]["training"]
    assert settings["precision"] == ("mixed_bfloat16" if cpu_has_native_bfloat16() else "float32")
