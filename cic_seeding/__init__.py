"""cic-seeding: seed CIC-style EVM test networks with realistic users and money, then prove it."""

__version__ = "0.1.0"
