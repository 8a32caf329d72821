"""holisafe-bench: the evaluation harness for HoliSafe-Bench."""

__version__ = "0.1.0"
