"""The pipeline's stages, each a plan step (what is left to do, from the files) and an
execute step: run (responses), merge (data-parallel shards), judge (verdicts) and interop
(the authors' prediction files in and out). Stages use the layers below them (providers,
judging, store, dataset); nothing below imports a stage."""
