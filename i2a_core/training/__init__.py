"""Translator training: embedding Parquet to memory-mapped splits, and one trial."""
