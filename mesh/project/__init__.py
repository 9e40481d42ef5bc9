"""Layer 2, the mesh's model of itself: mesh.yml (`config`), what a project's files say (`files`),
which profile a project builds with (`profiles`) and the dbt artifacts it reads (`artifacts`).
It imports the registry and the core, never dbt."""
