"""Layer 6, orchestration: what a run does to one project (`steps`), which project runs when and
in which process (`scheduler`), whether it must run at all (`fingerprint`), the gate around a
build (`gate`), the whole mesh (`pipeline`) and its live display (`progress`)."""
