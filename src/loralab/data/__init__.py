"""Readers that turn user files into validated examples, and batching for the models."""
