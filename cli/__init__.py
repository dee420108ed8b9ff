"""The command line behind node.py: one module per group of verbs."""
