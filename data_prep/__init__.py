"""Offline data preparation: datasets as their authors ship them -> verified, indexed TFRecord shards."""
