"""Sweep specs (YAML presets beside this file) and the schema that validates them."""
