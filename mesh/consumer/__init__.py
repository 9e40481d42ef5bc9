"""Layer 5, a consumer's side: syncing the generated sources or dbt-loom input (`sync`), adopting
its own sources (`adopt`), unit-test fixtures and qualifiers, validating its cross-project lineage
(`validate`) and the freshness of what it reads (`freshness`)."""
