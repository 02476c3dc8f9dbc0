"""Benchmark splits shipped with the package (JSON: val_list / test_list)."""
