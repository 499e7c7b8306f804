"""Datasets, synthetic flights, augmentation, training, export and evaluation (torch side)."""
