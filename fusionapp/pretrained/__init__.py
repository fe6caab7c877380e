"""Pretrained weights: where a backbone's weights come from (`weights`), the on-disk feature cache
(`cache`) and the frozen features of a set of rows (`features`)."""
