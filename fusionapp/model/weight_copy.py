"""Weights from one FusionClassifier into another of the same run: the models of a run differ at
most in what they read of the pretrained models (the model itself, or its features from the feature
cache) and in which backbone layers train (LoRA adapters included), never in the network's own
layers."""

from __future__ import annotations

import dataclasses

from fusionapp.compat import lora_merged_kernels


def network_layers(model) -> list:
    """The model's layers that hold weights, in graph order, those of its pretrained models left out."""
    backbones = model.backbones
    inside = {id(layer) for layer in (backbones.image, backbones.text) if layer is not None}
    if backbones.image_text is not None:
        inside.update(id(layer) for layer in backbones.image_text.layers)  # its encoders are the network's layers
    return [layer for layer in model.layers if layer.weights and id(layer) not in inside]


def copy_weights(source, target) -> None:
    """`source`'s weights into `target`: the network's own layers pair up in graph order (a pair
    that does not match in kind and shape is a bug, raised); each pretrained model both hold
    (`model.backbones`) is copied whole (`copy_backbone`)."""
    ours, theirs = network_layers(target), network_layers(source)
    pairs = list(zip(theirs, ours))
    if len(ours) != len(theirs) or any(_shape(a) != _shape(b) for a, b in pairs):
        raise RuntimeError(f"{source.name} and {target.name} are not networks of one spec: "
                           f"{[_shape(layer) for layer in theirs]} vs {[_shape(layer) for layer in ours]}")
    for layer, into in pairs:
        into.set_weights(layer.get_weights())
    for field in dataclasses.fields(source.backbones):
        from_model, into_model = getattr(source.backbones, field.name), getattr(target.backbones, field.name)
        if from_model is not None and into_model is not None:
            copy_backbone(from_model, into_model)


def copy_backbone(source, target) -> None:
    """A pretrained model's weights into its twin: one to one where both have the same LoRA
    adapters (or none); else what `source` computes, its adapters' updates merged into their
    kernels, with `target`'s adapters (if any) starting from no update."""
    source_factors, target_factors = _lora_factors(source), _lora_factors(target)
    if [tuple(v.shape) for v in source_factors] == [tuple(v.shape) for v in target_factors]:
        target.set_weights(source.get_weights())
        return
    merged, skipped = lora_merged_kernels(source), set(map(id, source_factors))
    values = [merged.get(id(variable), variable) for variable in source.weights if id(variable) not in skipped]
    kept = [variable for variable in target.weights if id(variable) not in set(map(id, target_factors))]
    if len(values) != len(kept):
        raise RuntimeError(f"{source.name} and {target.name} are not one backbone")
    for variable, value in zip(kept, values):
        variable.assign(value)
    for variable in target_factors:
        if variable.name == "lora_kernel_b":
            variable.assign(variable.numpy() * 0)


def _lora_factors(backbone) -> list:
    return [variable for variable in backbone.weights if variable.name in ("lora_kernel_a", "lora_kernel_b")]


def _shape(layer) -> tuple:
    """What a layer must match in its counterpart: its name, class and weight shapes."""
    return layer.name, type(layer).__name__, tuple(tuple(weight.shape) for weight in layer.weights)
