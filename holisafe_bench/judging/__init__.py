"""Judges: string matching (the paper's cost-free judge) and LLM judges, and the judge stage."""
