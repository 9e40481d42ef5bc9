"""dbt mesh on dbt-core: publish public interfaces, sync consumers, validate cross-project lineage."""

__version__ = "0.1.0"
