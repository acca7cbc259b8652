"""Retention: policies, the pure retention engine and its run, legal holds, signed audit heads."""
