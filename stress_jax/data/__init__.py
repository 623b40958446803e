"""Datasets read from disk (Yonsei) and the build CLI for every TFDS builder here."""
