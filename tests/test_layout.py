"""The package's shape: packages by stage, each importing only those before it in the flow; every
rule spelt in one place; nothing the package defines and never uses."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fusionapp"
# The flow, first to last: a package may import only those before it (and the base modules).
FLOW = ("settings", "preprocessing", "data", "model", "runs", "pretrained", "inference", "evaluation", "posthoc",
        "training", "search", "audit", "serve", "cli")
BASE = ("errors", "console")


def modules():
    """(dotted name, parsed module) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8")), path


def imported(tree) -> set[str]:
    """Every fusionapp module a module imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("fusionapp.")}


def stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_each_package_imports_only_those_before_it_in_the_flow():
    assert sorted(path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()) \
        == sorted(FLOW)
    broken = []
    for name, tree, _ in modules():
        own = stage(name)
        if own not in FLOW:
            continue
        for target in imported(tree):
            other = stage(target)
            if other in FLOW and other != own and FLOW.index(other) > FLOW.index(own):
                broken.append(f"{name} imports {target}")
    assert not broken, broken


def test_the_base_modules_import_no_stage():
    for name, tree, _ in modules():
        if stage(name) in BASE:
            assert {stage(target) for target in imported(tree)} <= set(BASE), name


def string_constants(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_run_folder_names_are_spelt_only_in_the_layout_module():
    from fusionapp.runs import layout
    from fusionapp.settings import FLAT_NAMES

    # (a folder named as its setting, `tensorboard`, is that setting's name too)
    names = {value for key, value in vars(layout).items() if key.endswith(("_FILE", "_DIR"))} - set(FLAT_NAMES)
    for name, tree, _ in modules():
        if name != "fusionapp.runs.layout":
            spelt = {node.value for node in string_constants(tree)} & names
            assert not spelt, (name, spelt)


def test_only_the_model_names_its_layers():
    """Post-hoc fitting, inference and explanations reach the head through the classifier's methods."""
    layer_names = ("head.", "wide.logits", "image.global_pool")
    for name, tree, _ in modules():
        if stage(name) != "model":
            spelt = [node.value for node in string_constants(tree) if node.value.startswith(layer_names)]
            assert not spelt, (name, spelt)


def test_one_place_builds_the_text_vectorizer_and_lists_the_modalities():
    built, listed = [], []
    for name, tree, _ in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "TextVectorization":
                built.append(name)
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODALITIES" for t in node.targets):
                listed.append(name)
    assert set(built) == {"fusionapp.preprocessing.text"} and listed == ["fusionapp.settings.model"]


def test_prediction_defaults_live_in_their_settings():
    """evaluate and predict (CLI and Python) take their batch size and bad-row rule from
    PredictionSettings: no literal default elsewhere."""
    for name, tree, _ in modules():
        if name == "fusionapp.settings.training":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("batch_size", "on_bad_row", "default") and \
                    isinstance(node.value, ast.Constant) and node.value.value in (256, "skip"):
                raise AssertionError(f"{name}: {node.arg}={node.value.value!r}")
            if isinstance(node, ast.arguments):
                for argument, default in zip(node.args[-len(node.defaults):] if node.defaults else [], node.defaults):
                    if argument.arg in ("batch_size", "on_bad_row") and isinstance(default, ast.Constant):
                        assert default.value is None, f"{name}: {argument.arg}={default.value!r}"


def defined_names():
    """(module, name) of every top-level function, class and constant of the package."""
    for name, tree, _ in modules():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield name, node.name, node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        yield name, target.id, node


def test_nothing_defined_is_left_unused():
    """A function, class or constant of the package that no module of the package (or its API)
    uses is dead code: tests use what the package uses."""
    used = {}
    for name, tree, _ in modules():
        for node in ast.walk(tree):
            word = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else \
                getattr(node, "name", None) if isinstance(node, ast.alias) else None
            if word:
                used.setdefault(word, set()).add(name)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                used.setdefault(node.value, set()).add(name)
    dead = []
    for module, name, node in defined_names():
        decorated = getattr(node, "decorator_list", [])
        if name.startswith("__") or decorated or name in ("main", "cli"):
            continue  # dunders, click commands and registered Keras classes are used by their frameworks
        users = used.get(name, set())
        if not users - {module} and not _used_in_module(module, name, node):
            dead.append(f"{module}.{name}")
    assert not dead, dead


def _used_in_module(module: str, name: str, definition) -> bool:
    """Whether `name` is read in its own module outside its definition."""
    path = PACKAGE.parent / (module.replace(".", os.sep) + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", os.sep) / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = {id(node) for node in ast.walk(definition)}
    return any((isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load))
               or (isinstance(node, ast.Attribute) and node.attr == name)
               for node in ast.walk(tree) if id(node) not in inside)


def test_import_fusionapp_loads_no_tensorflow_and_one_import_loads_a_model_file(trained_run):
    # One process (TensorFlow's import is most of its time): the package alone; Keras's own loader
    # with only fusionapp.model imported; then the package's loader.
    script = ("import sys, fusionapp; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules; "
              "import keras, fusionapp.model; "
              "m = keras.saving.load_model(sys.argv[1] + '/model.keras', safe_mode=True); print(type(m).__name__); "
              "model = fusionapp.load_model(sys.argv[1]); print(model.preprocessor.class_names)")
    done = subprocess.run([sys.executable, "-c", script, trained_run], capture_output=True, text=True)
    assert done.returncode == 0 and "FusionClassifier" in done.stdout, done.stderr[-2000:]
    assert "angular_new" in done.stdout, done.stdout


# Where a function may import one of the package's own modules: the CLI boundary (so --help loads
# nothing heavy), the lazy Python API, and the model file loader that `info` and the server's
# parent reach without TensorFlow.
LOCAL_IMPORTS_ALLOWED = ("fusionapp.cli", "fusionapp.runs.load")


def test_the_packages_own_modules_are_imported_at_the_top():
    inside = []
    for name, tree, _ in modules():
        if name == "fusionapp" or name.startswith(LOCAL_IMPORTS_ALLOWED):
            continue
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
                inside += [f"{name}.{function.name}: {module}" for module in names if module.startswith("fusionapp")]
    assert not inside, inside
