"""Layer 7, infrastructure: Terraform lint and runs (`terraform`), the providers' schemas
(`schemas`), the real-account proof kit (`verify`) and the local emulators (`emulate`)."""
