"""The package a SafeLLaVA-shaped hub repository ships beside its modeling file (test
scaffolding). It is importable only once the snapshot folder is on sys.path, as with the
authors' `safellava` package."""
