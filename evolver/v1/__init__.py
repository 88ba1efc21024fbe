"""Generated from proto/evolver/v1 by scripts/gen_protos.py. Do not edit."""
