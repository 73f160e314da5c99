"""Test package: makes ``tests.reference`` and ``tests.problems`` importable by their full names."""
