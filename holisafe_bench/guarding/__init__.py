"""Guard classification (the fifth stage): a guard model's verdict on each sample's image
(protocol `image`) or image+query request (protocol `input`), compared with the dataset's
ground truth. Guards are declared in the top-level `guards/` registry (guarding/spec.py),
run through the provider layer (stages/guard.py), read by the parsers here, and scored by
analysis/guard_metrics.py."""
