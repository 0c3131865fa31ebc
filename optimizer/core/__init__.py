"""The pure core: catalog specs, the policy spec, customer state, the typed decision and the
frame rules, as values and functions. It imports nothing of ours outside itself."""
