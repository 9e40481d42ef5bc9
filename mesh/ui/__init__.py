"""Layer 8, what a person uses: the `mesh` console script (`cli`, `cli_operations`), the commands
both surfaces share (`registry_commands`, `infra_commands`), reports, the lineage page with its
assets, and joining or leaving the mesh (`onboard`, `membership`)."""
