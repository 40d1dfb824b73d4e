"""Local devnet services: anvil, the metadata server, and their process control."""
