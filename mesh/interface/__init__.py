"""Layer 4, the contract: publishing a producer's interface (`publish`), comparing two of them and
judging a change by who reads it (`contracts`), the working tree's interface judged from its code
(`code_interface`, `code_columns`), what consumers read down to the column (`usage`,
`column_lineage`) and the registry's history views (`retention`)."""
