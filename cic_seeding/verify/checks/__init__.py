"""The built-in checks, one module per family; each is registered as an entry point."""
