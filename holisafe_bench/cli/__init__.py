"""The command line. Modules here only parse options and call stage modules; they import
nothing heavy at module level so that `holisafe-bench --help` stays fast."""
