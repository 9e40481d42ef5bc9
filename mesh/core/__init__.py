"""Layer 0, the foundation: errors, names, the user's surface (invoke or `mesh`), text helpers,
failpoints and interrupts. It imports nothing else of the mesh."""
